import { type HostTensor, type Module, parseSafetensors, type SafetensorsTensor } from '@lowrank/nn';

/**
 * Hugging Face weight files without a file system (browser-safe): one `model.safetensors`, or
 * shards listed by `model.safetensors.index.json`. F32, F16 and BF16 are read (16-bit values
 * are widened to float32 on load, unless `fromFiles`' `dtype` keeps the base in 16 bits:
 * half-load.ts).
 */

/** The parsed `model.safetensors.index.json`: which shard holds each tensor. */
export interface SafetensorsIndex {
  /** Optional metadata (e.g. `total_size`). */
  metadata?: Record<string, unknown>;
  /** Tensor name → shard file name. */
  weight_map: Record<string, string>;
}

/**
 * The shard file names of an index, in first-use order; throws on a malformed index.
 *
 * @example
 * shardFiles({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } });
 * // ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']
 */
export function shardFiles(index: unknown): string[] {
  const map = (index as SafetensorsIndex | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error('model.safetensors.index.json: expected an object with a "weight_map" of tensor → file');
  }
  const files: string[] = [];
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || !/^[^/\\]+\.safetensors$/.test(file)) {
      throw new Error(
        `model.safetensors.index.json: tensor '${name}' maps to an invalid file ${JSON.stringify(file)}`,
      );
    }
    if (!files.includes(file)) files.push(file);
  }
  if (files.length === 0) throw new Error('model.safetensors.index.json: weight_map is empty');
  return files;
}

/**
 * The tensors of every shard, merged and checked against the index: each tensor must be in the
 * shard the index names, and no shard may hold a tensor the index does not list.
 *
 * @example
 * const index = JSON.parse(indexText);
 * const tensors = mergeShards(index, (file) => bytesOf(file)); // name → tensor
 */
export function mergeShards<T = SafetensorsTensor>(
  index: unknown,
  read: (file: string) => Uint8Array,
  /** How a shard's bytes become tensors: `parseSafetensors` by default (`safetensorsEntries` keeps them undecoded). */
  parse: (bytes: Uint8Array) => Record<string, T> = (b) => parseSafetensors(b).tensors as Record<string, T>,
): Record<string, T> {
  const files = shardFiles(index);
  const map = (index as SafetensorsIndex).weight_map;
  const out: Record<string, T> = Object.create(null);
  const problems: string[] = [];
  for (const file of files) {
    let tensors: Record<string, T>;
    try {
      tensors = parse(read(file));
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    for (const [name, t] of Object.entries(tensors)) {
      if (map[name] !== file)
        problems.push(`${file} holds '${name}', which the index puts in ${map[name] ?? 'no file'}`);
      else out[name] = t;
    }
  }
  for (const [name, file] of Object.entries(map)) {
    if (!(name in out) && !problems.some((p) => p.includes(`'${name}'`)))
      problems.push(`'${name}' is not in ${file}`);
  }
  if (problems.length > 0)
    throw new Error(`sharded checkpoint does not match its index:\n  ${problems.join('\n  ')}`);
  return out;
}

/** Keys of HF Llama files that are not parameters: old RoPE buffers. */
const NOT_PARAMETERS = [/\.rotary_emb\.inv_freq$/];

/**
 * Whether an HF key is left out when loading into a model whose state dict has the keys `own`:
 * old RoPE buffers, and `lm_head.weight` of a tied head (the head is `embed_tokens`).
 *
 * @example
 * skippedHFKey('model.layers.0.self_attn.rotary_emb.inv_freq', new Set()); // true
 */
export function skippedHFKey(key: string, own: ReadonlySet<string>): boolean {
  return NOT_PARAMETERS.some((re) => re.test(key)) || (key === 'lm_head.weight' && !own.has(key));
}

/**
 * Loads HF weights into a model by name, strictly: every missing, unexpected or mis-shaped key
 * is listed in one error. A tied head (`lm_head.weight` beside a model without `lm_head`) and old
 * RoPE buffers are skipped.
 *
 * @example
 * loadHFWeights(model, parseSafetensors(bytes).tensors, 'Llama');
 */
export function loadHFWeights(
  model: Module,
  tensors: Readonly<Record<string, HostTensor>>,
  what: string,
): void {
  const own = new Set(Object.keys(model.stateDict()));
  const keep = new Map<string, HostTensor>();
  for (const [k, t] of Object.entries(tensors)) if (!skippedHFKey(k, own)) keep.set(k, t);
  try {
    model.loadStateDict(keep);
  } catch (e) {
    throw new Error(`${what} checkpoint does not match the config: ${(e as Error).message}`);
  }
}
