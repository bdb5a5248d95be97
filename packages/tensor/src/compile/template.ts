import { Storage } from '../storage.js';

/**
 * Kernel arguments as a replay rebuilds them. A traced argument is a tree of arrays and plain
 * objects (views, programs, epilogues) whose leaves are numbers, strings, typed arrays and
 * storages. A template keeps the parts without a storage or a host value as they are (a
 * program's expression tree is reused, not copied) and rebuilds only the paths to the leaves
 * that change per replay: storages (looked up in the replay's table of references) and host
 * values (recomputed).
 */

/** Rebuilds an argument from the replay's references and its host values. */
export type Template = (refs: readonly Storage[], host: readonly object[]) => unknown;

/** How a trace names what a template reads. */
export interface TemplateScope {
  /** The reference index of a storage (registering it when first seen). */
  ref(s: Storage): number;
  /** The host-value index of `value`, or -1 when it is not a host value. */
  hostValue(value: object): number;
}

/** A template for `value`, or null when it holds no storage and no host value (reuse it as is). */
export function template(value: unknown, scope: TemplateScope): Template | null {
  if (value instanceof Storage) {
    const i = scope.ref(value);
    return (refs) => refs[i];
  }
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return null;
  const h = scope.hostValue(value);
  if (h >= 0) return (_refs, host) => host[h];
  if (Array.isArray(value)) {
    const parts = value.map((v) => template(v, scope));
    if (parts.every((p) => p === null)) return null;
    return (refs, host) => value.map((v, i) => (parts[i] ? (parts[i] as Template)(refs, host) : v));
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return null;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  const parts = keys.map((k) => template(record[k], scope));
  if (parts.every((p) => p === null)) return null;
  return (refs, host) => {
    const out: Record<string, unknown> = { ...record };
    for (let i = 0; i < keys.length; i++) {
      const p = parts[i];
      if (p) out[keys[i]] = p(refs, host);
    }
    return out;
  };
}

/** The storages in a kernel's result, in a fixed order (a storage, or an object of them and nulls). */
export function resultStorages(result: unknown, out: Storage[] = []): Storage[] {
  if (result instanceof Storage) out.push(result);
  else if (result !== null && typeof result === 'object' && !ArrayBuffer.isView(result)) {
    for (const v of Object.values(result as Record<string, unknown>)) resultStorages(v, out);
  }
  return out;
}
