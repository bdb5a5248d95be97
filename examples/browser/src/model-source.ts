/**
 * Where the page's model comes from, as a reader of a Hugging Face model folder's files (the
 * `FileReader` that `AutoModelForCausalLM.fromFiles` takes): the checkpoint shipped with the
 * page (fetched), a folder the user picks (`<input type=file webkitdirectory>` or
 * `showDirectoryPicker`), or a Hub repository (downloaded by `hubDownload` into the browser's
 * Hub cache: the Origin Private File System where there is one, else the Cache API). Each
 * build reads the files again instead of holding their bytes, so only the model stays in
 * memory.
 */

import { browserHubStore, type HubProgress, hubDownload, isHubId } from '@lowrank/models/hub';
import * as lr from 'lowrank';

/** A model folder: a name to show, a key for saved adapters, and its files. */
export interface ModelSource {
  /** What the page shows ("the shipped checkpoint", "folder tiny-llama", "Hub org/name@abc123"). */
  label: string;
  /** Identifies the source among saved adapters' bases (a Hub id, a folder name). */
  id: string;
  /** One file of the folder by name, or null when the folder lacks it. */
  read: lr.FileReader;
}

/**
 * The models the page ships, served beside it (vite.config.ts, STATIC_FILES): `llama` (the
 * default) is the 5.8M-parameter Llama pre-trained on Tiny Shakespeare + the Brown Corpus, with
 * a 4096-token byte-level BPE tokenizer.json; `char` the older 213k-parameter character-level
 * GPT-2 pre-trained on Tiny Shakespeare.
 */
export const SHIPPED_MODELS = {
  llama: { folder: 'checkpoint', label: 'the shipped Llama' },
  char: { folder: 'checkpoint-char', label: 'the shipped char GPT-2' },
} as const;

/** The name of a shipped model (`?model=` on the page). */
export type ShippedModel = keyof typeof SHIPPED_MODELS;

/** Whether `name` names a shipped model. */
export function isShippedModel(name: string): name is ShippedModel {
  return Object.hasOwn(SHIPPED_MODELS, name);
}

/**
 * A checkpoint the page ships (`checkpoint/…` or `checkpoint-char/…`, served beside it): a
 * missing file reads as null.
 *
 * @example
 * const source = shippedSource(new URL('./', location.href).href); // the Llama
 * const char = shippedSource(new URL('./', location.href).href, 'char');
 */
export function shippedSource(base: string, model: ShippedModel = 'llama'): ModelSource {
  const { folder, label } = SHIPPED_MODELS[model];
  return {
    label,
    // the char model keeps the id it always had: adapters saved for it stay loadable
    id: model === 'llama' ? 'shipped-llama' : 'shipped',
    read: async (name) => {
      const res = await fetch(new URL(`${folder}/${name}`, base));
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`GET ${folder}/${name}: ${res.status} ${res.statusText}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

/**
 * A folder from `<input type=file webkitdirectory>`: its files by their path below the picked
 * folder (`webkitRelativePath` without its first part). Refused when there is no `config.json`
 * at its top, naming the files that came.
 *
 * @example
 * input.addEventListener('change', () => { const source = folderSource(input.files!); });
 */
export function folderSource(files: Iterable<File>): ModelSource {
  const byName = new Map<string, File>();
  let folder = '';
  for (const f of files) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length > 1) folder = parts[0];
    byName.set(parts.length > 1 ? parts.slice(1).join('/') : parts[0], f);
  }
  if (!byName.has('config.json')) {
    const names = [...byName.keys()].slice(0, 8).join(', ');
    throw new Error(
      `the folder${folder ? ` '${folder}'` : ''} has no config.json at its top (pick a Hugging Face model folder: config.json, model.safetensors or its index and shards, tokenizer.json); it holds ${names || 'no files'}`,
    );
  }
  return {
    label: `folder '${folder || 'picked files'}'`,
    id: `folder:${folder}`,
    read: async (name) => {
      const f = byName.get(name);
      return f ? new Uint8Array(await f.arrayBuffer()) : null;
    },
  };
}

/** What `directorySource` needs of a `FileSystemDirectoryHandle` (from `showDirectoryPicker`). */
export interface DirectoryLike {
  /** The folder's name. */
  readonly name: string;
  /** A file of the folder (a `NotFoundError` DOMException when absent). */
  getFileHandle(name: string): Promise<{ getFile(): Promise<Blob> }>;
}

/**
 * A folder from `showDirectoryPicker()` (Chromium): its top-level files, read when asked.
 *
 * @example
 * const source = await directorySource(await window.showDirectoryPicker());
 */
export async function directorySource(dir: DirectoryLike): Promise<ModelSource> {
  const read = async (name: string): Promise<Uint8Array | null> => {
    try {
      return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
    } catch (e) {
      if (
        (e as { name?: unknown }).name === 'NotFoundError' ||
        (e as { name?: unknown }).name === 'TypeError'
      )
        return null;
      throw e;
    }
  };
  if (!(await read('config.json')))
    throw new Error(`the folder '${dir.name}' has no config.json (pick a Hugging Face model folder)`);
  return { label: `folder '${dir.name}'`, id: `folder:${dir.name}`, read };
}

/**
 * A Hub repository, downloaded (or found) in the browser's Hub cache (`browserHubStore`:
 * OPFS, else the Cache API), each file's size and hash checked, an interrupted download resumed
 * by the next attempt.
 *
 * @example
 * const source = await hubSource('HuggingFaceTB/SmolLM2-135M', { onProgress: (p) => console.log(p.file, p.loaded) });
 */
export async function hubSource(
  id: string,
  options: { endpoint?: string; revision?: string; onProgress?: (p: HubProgress) => void } = {},
): Promise<ModelSource & { fromCache: boolean }> {
  const trimmed = id.trim();
  if (!isHubId(trimmed)) throw new Error(`'${id}' is not a Hub model id of the form org/name`);
  const snap = await hubDownload(trimmed, { ...options, cache: await browserHubStore() });
  return {
    label: `Hub ${trimmed}@${snap.commit.slice(0, 7)}`,
    id: `hub:${trimmed}`,
    read: snap.read,
    fromCache: snap.fromCache,
  };
}

/**
 * The folder's tokenizer: an HF `tokenizer.json` (with `tokenizer_config.json` and
 * `chat_template.jinja` when present), or lowrank's own spec (`{ "type": "char", … }`, whose
 * characters outside the vocabulary become spaces, as the page always did).
 *
 * @example
 * const tok = await tokenizerOf(source);
 */
export async function tokenizerOf(source: ModelSource): Promise<lr.Tokenizer> {
  const text = async (name: string): Promise<string | null> => {
    const b = await source.read(name);
    return b ? new TextDecoder().decode(b) : null;
  };
  const json = async (name: string): Promise<unknown> => {
    const t = await text(name);
    if (t === null) return null;
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new Error(`${source.label}: ${name} is not valid JSON (${(e as Error).message})`);
    }
  };
  const spec = await json('tokenizer.json');
  if (spec === null) throw new Error(`${source.label} has no tokenizer.json`);
  if (lr.isHFTokenizerJson(spec)) {
    const config = ((await json('tokenizer_config.json')) ?? {}) as Record<string, unknown>;
    return new lr.HFTokenizer({ tokenizer: spec, config, chatTemplate: await text('chat_template.jinja') });
  }
  const s = spec as lr.TokenizerSpec;
  if (s.type === 'char') return new lr.CharTokenizer(s.chars, { eos: s.eos ?? '\n', unknown: ' ' });
  return lr.tokenizerFromSpec(s);
}
