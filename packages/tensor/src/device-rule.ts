/**
 * The one rule that picks a device for `init({ backend: 'auto' })` (and so for the demo and the
 * CLI, whose default is 'auto'):
 *
 * 1. a hardware GPU adapter: WebGPU;
 * 2. a software adapter (WebGPU emulated on the CPU: Mesa's llvmpipe/lavapipe, SwiftShader,
 *    WARP): the CPU backend, because it is faster — measured with `bench/demo-train.ts` (the
 *    demo's LoRA training step, GPT-2-tiny, B = 8, T = 128) on the 2-core development machine:
 *    the Wasm CPU backend on both cores 2577 tokens/s, lavapipe (Mesa 25.0.7, LLVM 15) on the same
 *    cores 443 tokens/s, the same losses (2026-12-03; 5.8× in the CPU's favour);
 * 3. no adapter: the CPU.
 *
 * `init({ backend: 'webgpu' })` (`--device webgpu`) still uses a software adapter.
 */

/** What an adapter says about itself: the fields of `GPUAdapterInfo` the rule reads. */
export interface AdapterDescription {
  /** `GPUAdapterInfo.vendor`, e.g. 'nvidia', 'mesa', 'google'. */
  vendor?: string;
  /** `GPUAdapterInfo.architecture`, e.g. 'hopper', 'software', 'swiftshader'. */
  architecture?: string;
  /** `GPUAdapterInfo.device`, e.g. 'llvmpipe-llvm-15-0-6-256-bits'. */
  device?: string;
  /** `GPUAdapterInfo.description`, e.g. 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)'. */
  description?: string;
  /** `GPUAdapterInfo.isFallbackAdapter` (or the older `GPUAdapter.isFallbackAdapter`). */
  isFallbackAdapter?: boolean;
  /** Dawn's adapter type where it reports one: 'discrete GPU', 'integrated GPU', 'CPU', 'unknown'. */
  type?: string;
}

/** Names of the software rasterizers that implement WebGPU on the CPU. */
const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|microsoft basic render/i;

/**
 * Whether an adapter is WebGPU emulated on the CPU: a fallback adapter, Dawn's 'CPU' type,
 * architecture 'software', or the name of a known software rasterizer in any field.
 *
 * @example
 * lr.isSoftwareAdapter({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15' }); // true
 * lr.isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper' }); // false
 */
export function isSoftwareAdapter(info: AdapterDescription): boolean {
  if (info.isFallbackAdapter === true) return true;
  if (info.type !== undefined && /^cpu$/i.test(info.type.trim())) return true;
  if (info.architecture !== undefined && /^software$/i.test(info.architecture.trim())) return true;
  return [info.vendor, info.architecture, info.device, info.description].some(
    (s) => s !== undefined && SOFTWARE_NAMES.test(s),
  );
}

/** What `autoDevice` decided, and why (`InitResult.reason`). */
export interface AutoDeviceChoice {
  /** The device 'auto' takes. */
  device: 'webgpu' | 'cpu';
  /** One line saying why. */
  reason: string;
}

/**
 * The device rule of `init({ backend: 'auto' })` over the adapter found (null: none): a hardware
 * GPU takes WebGPU; a software adapter and no adapter take the CPU, which runs the demo's
 * training step faster than a software adapter does on the same cores (`bench/demo-train.ts`).
 *
 * @example
 * lr.autoDevice({ vendor: 'nvidia', architecture: 'hopper' }).device; // 'webgpu'
 * lr.autoDevice({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe' }).device; // 'cpu'
 * lr.autoDevice(null).device; // 'cpu'
 */
export function autoDevice(adapter: AdapterDescription | null): AutoDeviceChoice {
  if (adapter === null) return { device: 'cpu', reason: 'no WebGPU adapter was found' };
  if (!isSoftwareAdapter(adapter)) return { device: 'webgpu', reason: 'a hardware GPU adapter' };
  return {
    device: 'cpu',
    reason:
      `the only WebGPU adapter is a software one (${adapterName(adapter)}), slower than the CPU backend ` +
      `(asking for 'webgpu' uses it anyway)`,
  };
}

/**
 * The adapter's fields joined into one name, as the WebGPU backend's description shows it.
 *
 * @example
 * lr.adapterName({ vendor: 'nvidia', architecture: 'hopper' }); // 'nvidia hopper'
 */
export function adapterName(info: AdapterDescription): string {
  const name = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ');
  return name || 'unknown adapter';
}

/**
 * The rule's view of a `GPUAdapter` (its `info`, and the older `isFallbackAdapter` flag).
 *
 * @example
 * const adapter = await navigator.gpu.requestAdapter();
 * if (adapter) console.log(lr.isSoftwareAdapter(lr.describeAdapter(adapter)));
 */
export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean; type?: string };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const out: AdapterDescription = {
    vendor: info?.vendor,
    architecture: info?.architecture,
    device: info?.device,
    description: info?.description,
    isFallbackAdapter: info?.isFallbackAdapter ?? legacy,
  };
  if (typeof info?.type === 'string') out.type = info.type;
  return out;
}
