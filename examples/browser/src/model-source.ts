/**
 * Where the page's model comes from, as a reader of a Hugging Face model folder's files (the
 * `FileReader` that `AutoModelForCausalLM.fromFiles` takes): the checkpoint shipped with the
 * page (fetched), a folder the user picks (`<input type=file webkitdirectory>` or
 * `showDirectoryPicker`), or a Hub repository (downloaded by `hubDownload` into the browser's
 * Hub cache: the Origin Private File System where there is one, else the Cache API). Each
 * build reads the files again instead of holding their bytes, so only the model stays in
 * memory; the weights are read by range (`blobRangeReader` over a `File` / `Blob`), one tensor
 * at a time as the load reaches it, so a load never holds a `.safetensors` file in the page's
 * memory either.
 */

import { browserHubStore, type HubProgress, hubDownload, isHubId } from '@lowrank/models/hub';
import * as lr from 'lowrank';

/** A model folder: a name to show, a key for saved adapters, and its files. */
export interface ModelSource {
  /** What the page shows ("the shipped checkpoint", "folder tiny-llama", "Hub org/name@abc123"). */
  label: string;
  /** Identifies the source among saved adapters' bases (a Hub id, a folder name). */
  id: string;
  /** One file of the folder by name, or null when the folder lacks it (the config, the tokenizer). */
  read: lr.FileReader;
  /**
   * What the model loads through (`AutoModelForCausalLM.fromFiles`): `read`, but a
   * `.safetensors` file comes as an `AsyncRangeReader` where the source has it as a `Blob`, so
   * the load reads one tensor's range at a time.
   */
  weights: lr.AsyncRangeFileReader;
}

/**
 * `read` for every file but a `.safetensors` one, which `blobOf` gives as a Blob read by range.
 */
function rangeReading(
  read: lr.FileReader,
  blobOf: (name: string) => Promise<Blob | null>,
): lr.AsyncRangeFileReader {
  return async (name) => {
    if (!name.endsWith('.safetensors')) return read(name);
    const blob = await blobOf(name);
    return blob ? lr.blobRangeReader(blob) : null;
  };
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
  const get = async (name: string): Promise<Response | null> => {
    const res = await fetch(new URL(`${folder}/${name}`, base));
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET ${folder}/${name}: ${res.status} ${res.statusText}`);
    return res;
  };
  const read: lr.FileReader = async (name) => {
    const res = await get(name);
    return res ? new Uint8Array(await res.arrayBuffer()) : null;
  };
  return {
    label,
    // the char model keeps the id it always had: adapters saved for it stay loadable
    id: model === 'llama' ? 'shipped-llama' : 'shipped',
    read,
    // fetched whole as a Blob (the browser keeps it, not the page's heap), then read by range:
    // no HTTP Range requests, as the shipped weights are small (11.5 MB Llama, 0.9 MB char)
    weights: rangeReading(read, async (name) => (await get(name))?.blob() ?? null),
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
  const read: lr.FileReader = async (name) => {
    const f = byName.get(name);
    return f ? new Uint8Array(await f.arrayBuffer()) : null;
  };
  return {
    label: `folder '${folder || 'picked files'}'`,
    id: `folder:${folder}`,
    read,
    weights: rangeReading(read, async (name) => byName.get(name) ?? null),
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
  const file = async (name: string): Promise<Blob | null> => {
    try {
      return await (await dir.getFileHandle(name)).getFile();
    } catch (e) {
      if (
        (e as { name?: unknown }).name === 'NotFoundError' ||
        (e as { name?: unknown }).name === 'TypeError'
      )
        return null;
      throw e;
    }
  };
  const read: lr.FileReader = async (name) => {
    const f = await file(name);
    return f ? new Uint8Array(await f.arrayBuffer()) : null;
  };
  if (!(await read('config.json')))
    throw new Error(`the folder '${dir.name}' has no config.json (pick a Hugging Face model folder)`);
  return { label: `folder '${dir.name}'`, id: `folder:${dir.name}`, read, weights: rangeReading(read, file) };
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
    weights: snap.open,
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
