/**
 * Adapters kept in the browser (IndexedDB), so that they survive a reload: each record is the
 * PEFT pair (`adapter_config.json` text + `adapter_model.safetensors` bytes) that `serializeAdapter`
 * writes and `loadAdapterFromBytes` reads, with what the page shows about the run.
 */
import type { AdapterInfo } from './session.js';

/** One saved adapter. */
export interface SavedAdapter {
  name: string;
  info: AdapterInfo;
  configJson: string;
  safetensors: Uint8Array;
  /** Which base model it was trained on (`Session.modelKey`); another model's adapter is listed, not loaded. */
  modelKey: string;
  savedAt: number;
}

const STORE = 'adapters';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'));
  });
}

/** The adapters saved in this browser (one IndexedDB database). */
export class AdapterStore {
  private constructor(private readonly db: IDBDatabase) {}

  /** Opens (or creates) the database; rejects where IndexedDB is unavailable (some private windows). */
  static async open(dbName = 'lowrank-browser-page'): Promise<AdapterStore> {
    if (typeof indexedDB === 'undefined') throw new Error('this browser has no IndexedDB');
    const open = indexedDB.open(dbName, 1);
    open.onupgradeneeded = () => {
      if (!open.result.objectStoreNames.contains(STORE))
        open.result.createObjectStore(STORE, { keyPath: 'name' });
    };
    return new AdapterStore(await request(open));
  }

  private async run<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const tx = this.db.transaction(STORE, mode);
    const result = request(fn(tx.objectStore(STORE)));
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted (storage full?)'));
    });
    return result;
  }

  /** Every saved adapter, oldest first. */
  async list(): Promise<SavedAdapter[]> {
    const all = (await this.run('readonly', (s) => s.getAll())) as SavedAdapter[];
    return all.sort((a, b) => a.savedAt - b.savedAt);
  }

  /** Saves (or replaces) an adapter under its name. */
  async put(record: SavedAdapter): Promise<void> {
    await this.run('readwrite', (s) => s.put(record));
  }

  async delete(name: string): Promise<void> {
    await this.run('readwrite', (s) => s.delete(name));
  }
}
