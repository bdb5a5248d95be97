import type { OpfsDirectoryHandle, OpfsFileHandle, OpfsWritable } from '../src/hub-opfs.js';

/**
 * An in-memory stand-in for the Origin Private File System (Node has none), with the behaviour
 * `OpfsHubStore` relies on: `getFileHandle`/`getDirectoryHandle` throw a `NotFoundError`
 * DOMException for an absent entry unless `create`; `createWritable` writes to a swap copy that
 * becomes the file's contents only on `close()`; `removeEntry` refuses a non-empty directory
 * without `recursive`; `move` renames. Every commit and move is logged with its path and size,
 * so a test can check that a name only ever held whole contents.
 */
export interface FsEvent {
  /** `'commit'` (a writable closed) or `'move'`. */
  kind: 'commit' | 'move';
  /** The file's path after the event. */
  path: string;
  /** Its size then. */
  size: number;
}

const err = (name: string, message: string) => new DOMException(message, name);

export class MemFile implements OpfsFileHandle {
  readonly kind = 'file';
  data: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  move?: (parent: OpfsDirectoryHandle, name: string) => Promise<void>;

  constructor(
    public parent: MemDir,
    public name: string,
  ) {
    if (parent.fs.withMove)
      this.move = async (to, name) => {
        const dest = to as MemDir;
        if (this.parent.entries.get(this.name) !== this) throw err('NotFoundError', `${this.name} is gone`);
        this.parent.entries.delete(this.name);
        dest.entries.set(name, this);
        this.parent = dest;
        this.name = name;
        this.parent.fs.log.push({ kind: 'move', path: this.path, size: this.data.length });
      };
  }

  get path(): string {
    return `${this.parent.path}/${this.name}`;
  }

  async getFile(): Promise<Blob> {
    return new Blob([this.data.slice()]);
  }

  async createWritable(options: { keepExistingData?: boolean } = {}): Promise<OpfsWritable> {
    const parts: Uint8Array<ArrayBuffer>[] = options.keepExistingData ? [this.data.slice()] : [];
    let open = true;
    const fs = this.parent.fs;
    fs.openWritables++;
    const done = () => {
      if (!open) throw err('InvalidStateError', 'the writable is closed');
      open = false;
      fs.openWritables--;
    };
    return {
      write: async (data) => {
        if (!open) throw err('InvalidStateError', 'the writable is closed');
        parts.push(data instanceof Blob ? new Uint8Array(await data.arrayBuffer()) : data.slice());
      },
      close: async () => {
        done();
        this.data = new Uint8Array(await new Blob(parts).arrayBuffer());
        fs.log.push({ kind: 'commit', path: this.path, size: this.data.length });
      },
      abort: async () => done(),
    };
  }
}

export class MemDir implements OpfsDirectoryHandle {
  readonly kind = 'directory';
  readonly entries = new Map<string, MemDir | MemFile>();

  constructor(
    readonly fs: MemFs,
    readonly name: string,
    readonly path: string,
  ) {}

  private child(name: string): MemDir | MemFile | undefined {
    if (name === '' || name === '.' || name === '..' || name.includes('/'))
      throw new TypeError(`invalid name ${JSON.stringify(name)}`);
    return this.entries.get(name);
  }

  async getDirectoryHandle(name: string, options: { create?: boolean } = {}): Promise<MemDir> {
    const e = this.child(name);
    if (e instanceof MemDir) return e;
    if (e) throw err('TypeMismatchError', `${name} is a file`);
    if (!options.create) throw err('NotFoundError', `${this.path}/${name} not found`);
    const d = new MemDir(this.fs, name, `${this.path}/${name}`);
    this.entries.set(name, d);
    return d;
  }

  async getFileHandle(name: string, options: { create?: boolean } = {}): Promise<MemFile> {
    const e = this.child(name);
    if (e instanceof MemFile) return e;
    if (e) throw err('TypeMismatchError', `${name} is a directory`);
    if (!options.create) throw err('NotFoundError', `${this.path}/${name} not found`);
    const f = new MemFile(this, name);
    this.entries.set(name, f);
    return f;
  }

  async removeEntry(name: string, options: { recursive?: boolean } = {}): Promise<void> {
    const e = this.child(name);
    if (!e) throw err('NotFoundError', `${this.path}/${name} not found`);
    if (e instanceof MemDir && e.entries.size > 0 && !options.recursive)
      throw err('InvalidModificationError', `${name} is not empty`);
    this.entries.delete(name);
  }

  /** Every file below, by path relative to this directory. */
  files(prefix = ''): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [n, e] of this.entries) {
      if (e instanceof MemFile) out.set(`${prefix}${n}`, e.data);
      else for (const [k, v] of e.files(`${prefix}${n}/`)) out.set(k, v);
    }
    return out;
  }
}

/** The file system: its root, the event log, and how many writables are open. */
export class MemFs {
  readonly log: FsEvent[] = [];
  openWritables = 0;
  readonly root: MemDir;

  constructor(
    /** Whether file handles have `move` (Chromium and Firefox do). */
    readonly withMove = true,
  ) {
    this.root = new MemDir(this, '', '');
  }
}
