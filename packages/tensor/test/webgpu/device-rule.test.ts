import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireGPU } from '../../src/backends/webgpu/acquire.js';
import * as lr from '../../src/index.js';

/**
 * The device rule of `init({ backend: 'auto' })`: `autoDevice` over adapter descriptions (the
 * strings real adapters report), init following it for adapters it is handed, for the adapter
 * of this machine, and for a backend made earlier; and Dawn's limit-clamp warnings kept off
 * stderr without hiding anything else written there.
 */

// what adapters report in GPUAdapterInfo (Dawn in Node, Chromium in a page)
const LAVAPIPE: lr.AdapterDescription = {
  vendor: 'mesa',
  architecture: 'software',
  device: 'llvmpipe-llvm-15-0-6-256-bits-',
  description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)',
  isFallbackAdapter: true,
};
const SOFTWARE: Record<string, lr.AdapterDescription> = {
  lavapipe: LAVAPIPE,
  'lavapipe, no fallback flag (older Dawn)': { ...LAVAPIPE, isFallbackAdapter: undefined },
  'llvmpipe by name only': {
    vendor: '',
    architecture: '',
    device: '',
    description: 'llvmpipe (LLVM 19.1.7, 256 bits)',
  },
  'SwiftShader (Chromium)': { vendor: 'google', architecture: 'swiftshader', device: '', description: '' },
  'fallback flag only': { vendor: 'unknown', architecture: '', isFallbackAdapter: true },
  "Dawn's CPU type": { vendor: 'x', architecture: 'y', type: 'CPU' },
  'WARP (D3D12)': { vendor: 'microsoft', description: 'Microsoft Basic Render Driver' },
};
const HARDWARE: Record<string, lr.AdapterDescription> = {
  // as Dawn reported it on the H200 machine (Vulkan, driver 580)
  'NVIDIA H200': {
    vendor: 'nvidia',
    architecture: '',
    device: 'nvidia-h200',
    description: 'NVIDIA: 580.159.04 580.159.4.0',
    isFallbackAdapter: false,
  },
  'AMD on RADV': {
    vendor: 'amd',
    architecture: 'rdna-3',
    description: 'AMD Radeon RX 7900 XTX (RADV NAVI31)',
  },
  'Intel integrated': { vendor: 'intel', architecture: 'gen-12lp', type: 'integrated GPU' },
  'Apple (Chromium)': { vendor: 'apple', architecture: 'metal-3' },
  'nothing known': {},
};

describe('autoDevice: a hardware GPU, else the CPU', () => {
  for (const [name, info] of Object.entries(SOFTWARE)) {
    it(`${name}: software, so the CPU`, () => {
      expect(lr.isSoftwareAdapter(info)).toBe(true);
      const choice = lr.autoDevice(info);
      expect(choice.device).toBe('cpu');
      expect(choice.reason).toMatch(/software one .*slower than the CPU backend/);
    });
  }
  for (const [name, info] of Object.entries(HARDWARE)) {
    it(`${name}: hardware, so WebGPU`, () => {
      expect(lr.isSoftwareAdapter(info)).toBe(false);
      expect(lr.autoDevice(info).device).toBe('webgpu');
    });
  }
  it('no adapter: the CPU', () => {
    expect(lr.autoDevice(null)).toEqual({ device: 'cpu', reason: 'no WebGPU adapter was found' });
  });
  it('describeAdapter reads GPUAdapterInfo and the older GPUAdapter.isFallbackAdapter', () => {
    const adapter = { info: { vendor: 'google', architecture: 'swiftshader' }, isFallbackAdapter: true };
    expect(lr.describeAdapter(adapter as unknown as GPUAdapter)).toEqual({
      vendor: 'google',
      architecture: 'swiftshader',
      device: undefined,
      description: undefined,
      isFallbackAdapter: true,
    });
  });
});

/** A GPU object that hands out `adapter` (what `init`'s `webgpu.gpu` option accepts). */
function gpuWith(adapter: unknown): GPU {
  return { requestAdapter: async () => adapter } as unknown as GPU;
}

let realAdapterUnavailable: string | null = null;
let realGPU: GPU | null = null;
try {
  realGPU = await acquireGPU();
  if (!(await realGPU.requestAdapter())) realAdapterUnavailable = 'no WebGPU adapter on this machine';
} catch (e) {
  realAdapterUnavailable = `no WebGPU here: ${(e as Error).message}`;
}
if (realAdapterUnavailable)
  console.warn(`[device-rule tests on a real adapter skipped] ${realAdapterUnavailable}`);

describe("init({ backend: 'auto' }) follows the rule", () => {
  afterAll(() => {
    lr.destroyWebGPU();
    lr.setDefaultDevice('cpu');
  });

  it('no adapter, or a software one: the CPU, saying why; a failing WebGPU: the CPU with a notice', async () => {
    const notices: string[] = [];
    const onNotice = (m: string): void => void notices.push(m);
    expect(await lr.init({ backend: 'auto', onNotice, webgpu: { gpu: gpuWith(null) } })).toEqual({
      device: 'cpu',
      description: lr.getBackend('cpu').description,
      reason: 'no WebGPU adapter was found',
    });
    const software = { info: { vendor: 'google', architecture: 'swiftshader' } };
    const r = await lr.init({ backend: 'auto', onNotice, webgpu: { gpu: gpuWith(software) } });
    expect(r.device).toBe('cpu');
    expect(r.reason).toBe(
      "the only WebGPU adapter is a software one (google swiftshader), slower than the CPU backend (asking for 'webgpu' uses it anyway)",
    );
    expect(lr.hasBackend('webgpu')).toBe(false); // no device was opened on the software adapter
    expect(notices).toEqual([]); // the rule's choices are no failures
    const broken = {
      requestAdapter: async () => Promise.reject(new Error('driver crashed')),
    } as unknown as GPU;
    const f = await lr.init({ backend: 'auto', onNotice, webgpu: { gpu: broken } });
    expect(f).toMatchObject({ device: 'cpu', reason: 'WebGPU unavailable (driver crashed)' });
    expect(notices).toEqual(['lowrank: WebGPU unavailable (driver crashed); using the CPU backend']);
    await expect(lr.init({ backend: 'webgpu', webgpu: { gpu: broken } })).rejects.toThrow('driver crashed');
    await expect(lr.init({ backend: 'webgpu', webgpu: { gpu: gpuWith(null) } })).rejects.toThrow(
      'no WebGPU adapter was found',
    );
    expect(lr.getDefaultDevice()).toBe('cpu');
  });

  it.skipIf(realAdapterUnavailable !== null)("this machine's adapter: as autoDevice says", async () => {
    const real = (await realGPU!.requestAdapter())!;
    const want = lr.autoDevice(lr.describeAdapter(real)).device;
    const r = await lr.init({ backend: 'auto' });
    expect(r.device).toBe(want);
    expect(r.reason).toBe(
      want === 'cpu' ? lr.autoDevice(lr.describeAdapter(real)).reason : 'a hardware GPU adapter',
    );
    lr.destroyWebGPU();
  });

  it.skipIf(realAdapterUnavailable !== null)('a hardware adapter: WebGPU, on that adapter', async () => {
    const real = (await realGPU!.requestAdapter())!;
    // this machine's device, presented as a hardware GPU
    const hardware = {
      info: { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' },
      limits: real.limits,
      features: real.features,
      requestDevice: (d?: GPUDeviceDescriptor) => real.requestDevice(d),
    };
    const notices: string[] = [];
    const r = await lr.init({
      backend: 'auto',
      onNotice: (m) => void notices.push(m),
      webgpu: { gpu: gpuWith(hardware) },
    });
    try {
      // the description names the adapter, and the subgroup path where the device has subgroups
      expect(r).toEqual({
        device: 'webgpu',
        description: expect.stringMatching(
          /^WebGPU \(nvidia hopper NVIDIA H200(; subgroups of \d+\+ lanes: the attention forward's row reductions)?\)$/,
        ),
        reason: 'a hardware GPU adapter',
      });
    } catch (e) {
      lr.destroyWebGPU(); // the next test must not find this adapter's backend live
      throw e;
    }
    expect(notices).toEqual([]);
    expect(await lr.tensor([1, 2, 3]).mul(2).toArray()).toEqual([2, 4, 6]);
    lr.destroyWebGPU();
  });

  it.skipIf(realAdapterUnavailable !== null)(
    "'webgpu' takes a software adapter; a later 'auto' applies the rule to that backend",
    async () => {
      const real = (await realGPU!.requestAdapter())!;
      const software = lr.isSoftwareAdapter(lr.describeAdapter(real));
      expect(await lr.init({ backend: 'webgpu' })).toMatchObject({ device: 'webgpu', reason: 'asked for' });
      const r = await lr.init({ backend: 'auto' });
      expect(r.device).toBe(software ? 'cpu' : 'webgpu');
      expect(lr.hasBackend('webgpu')).toBe(true); // the explicit backend stays usable
      lr.destroyWebGPU();
    },
  );
});

const gpuNode = new URL('../../src/backends/webgpu/gpu-node.ts', import.meta.url).href;
const index = new URL('../../src/index.ts', import.meta.url).href;

/**
 * Runs `code` (an ES module) in a new Node process over the sources, its stderr a file as in
 * `node app.js 2> log` (Node's own pipes to a child are sockets, which /proc cannot reopen, so
 * the filter does not apply there); its stdout and stderr.
 */
function node(code: string): { stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-stderr-'));
  const file = join(dir, 'stderr');
  const fd = openSync(file, 'w');
  try {
    const r = spawnSync(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', code],
      {
        cwd: new URL('../..', import.meta.url).pathname,
        stdio: ['ignore', 'pipe', fd],
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    closeSync(fd);
    const stderr = readFileSync(file, 'utf8');
    if (r.status !== 0) throw new Error(`child exited with ${r.status}: ${stderr}`);
    return { stdout: r.stdout, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("Dawn's 'artificially reduced' warnings", () => {
  it('are taken out of what reaches stderr while the adapter is requested; nothing else is', async () => {
    const warning = (kind: string): string =>
      `Warning: maxDynamic${kind}BuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n`;
    const { stdout, stderr } = node(`
      import { writeSync } from 'node:fs';
      const { filterDawnWarnings } = await import(${JSON.stringify(gpuNode)});
      writeSync(2, 'before\\n');
      const v = filterDawnWarnings(() => {
        writeSync(2, ${JSON.stringify(warning('Uniform'))});
        writeSync(2, 'a real error\\n');
        writeSync(2, ${JSON.stringify(warning('Storage'))});
        console.error('console.error too');
        return 42;
      });
      writeSync(2, 'after\\n');
      console.log(v);
    `);
    expect(stdout).toBe('42\n');
    expect(stderr).toBe('before\na real error\nconsole.error too\nafter\n');
  });

  it.skipIf(realAdapterUnavailable !== null)("init({ backend: 'webgpu' }) prints none of them", async () => {
    const { stdout, stderr } = node(`
      const lr = await import(${JSON.stringify(index)});
      const r = await lr.init({ backend: 'webgpu' });
      console.log(r.device, await lr.tensor([1, 2]).add(1).toArray());
      console.error('stderr works');
      lr.destroyWebGPU();
    `);
    expect(stdout).toBe('webgpu [ 2, 3 ]\n');
    expect(stderr).toBe('stderr works\n');
  });
});
