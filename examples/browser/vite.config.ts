import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

/**
 * Files the page fetches at run time, served as they are (not bundled): the shipped models
 * (examples/checkpoints/) and the E2E data (data/e2e/). `checkpoint/` is the default, the 5.8M
 * Llama with its byte-level BPE tokenizer.json (examples/pretrain-llama.ts); `checkpoint-char/`
 * the older 213k character-level GPT-2 (examples/pretrain-shakespeare.ts, `?model=char`).
 * Served by the dev server and copied into dist/ by the build.
 */
export const STATIC_FILES: Record<string, string> = {
  ...checkpointFiles('checkpoint', 'llama-shakespeare-brown', [
    'config.json',
    'model.safetensors',
    'tokenizer.json',
    'tokenizer_config.json',
    'training.json',
  ]),
  ...checkpointFiles('checkpoint-char', 'shakespeare-char', [
    'config.json',
    'model.safetensors',
    'tokenizer.json',
    'training.json',
  ]),
  'data/e2e-valid.txt': here('../../data/e2e/valid.txt'),
  'data/e2e-test.txt': here('../../data/e2e/test.txt'),
};

function checkpointFiles(served: string, dir: string, files: string[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [`${served}/${f}`, here(`../checkpoints/${dir}/${f}`)]));
}

/**
 * The page is served cross-origin isolated: the CPU backend's Wasm heap is then a shared memory
 * (and may use worker threads). Without isolation the heap is a plain memory whose growth
 * detaches the typed arrays over it, and a storage the engine moved (`adoptMemory`) is not
 * re-derived (packages/tensor/src/backends/wasm/storage.ts, NOTE): reading it fails with
 * "detached ArrayBuffer" once training has grown the heap. Every file the page loads is its
 * own, so `require-corp` costs nothing. A static host must send the same two headers.
 */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
} as const;

function staticFiles(): Plugin {
  return {
    name: 'lowrank-static-files',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const path = (req.url ?? '').split('?')[0].replace(/^\//, '');
        const file = STATIC_FILES[path];
        if (!file) return next();
        if (!existsSync(file)) {
          res.statusCode = 404;
          res.end(`missing ${file}`);
          return;
        }
        res.setHeader(
          'Content-Type',
          path.endsWith('.json') ? 'application/json' : 'application/octet-stream',
        );
        createReadStream(file).pipe(res);
      });
    },
    generateBundle() {
      for (const [fileName, file] of Object.entries(STATIC_FILES)) {
        if (!existsSync(file)) throw new Error(`browser page: ${file} is missing (needed at /${fileName})`);
        this.emitFile({ type: 'asset', fileName, source: readFileSync(file) });
      }
    },
  };
}

export default defineConfig({
  // 'source' maps every workspace package to its TypeScript sources (no package build needed);
  // 'browser' swaps Node-only modules (the tensor package's #gpu-node) for their browser versions.
  resolve: {
    conditions: ['source', ...defaultClientConditions],
    // The op-suite page runs the tensor package's property suite with a tiny vitest stand-in.
    alias: { vitest: here('./src/suite/vitest-shim.ts') },
  },
  build: {
    target: 'es2022',
    chunkSizeWarningLimit: 2000,
    rollupOptions: { input: { main: here('./index.html'), suite: here('./suite.html') } },
  },
  server: { host: '127.0.0.1', fs: { allow: [here('../..')] }, headers: ISOLATION_HEADERS },
  preview: { host: '127.0.0.1', headers: ISOLATION_HEADERS },
  plugins: [staticFiles()],
});
