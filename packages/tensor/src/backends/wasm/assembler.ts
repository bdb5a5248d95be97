/**
 * A small WebAssembly bytecode assembler: enough of the binary format (types, one imported
 * memory, functions with locals, structured control flow, scalar and SIMD128 ops) for the CPU
 * kernels to be emitted at run time from TypeScript, with no toolchain and no committed binaries.
 * Instructions are written in stack order, named as in the text format (`'f32x4.add'`), so a
 * kernel reads like its WAT.
 */

/** Value types of locals, parameters and results. */
export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

// Plain instructions without immediates: one opcode byte each.
const PLAIN = {
  unreachable: 0x00,
  nop: 0x01,
  return: 0x0f,
  drop: 0x1a,
  select: 0x1b,
  'i32.eqz': 0x45,
  'i32.eq': 0x46,
  'i32.ne': 0x47,
  'i32.lt_s': 0x48,
  'i32.lt_u': 0x49,
  'i32.gt_s': 0x4a,
  'i32.gt_u': 0x4b,
  'i32.le_s': 0x4c,
  'i32.le_u': 0x4d,
  'i32.ge_s': 0x4e,
  'i32.ge_u': 0x4f,
  'f32.eq': 0x5b,
  'f32.ne': 0x5c,
  'f32.lt': 0x5d,
  'f32.gt': 0x5e,
  'f32.le': 0x5f,
  'f32.ge': 0x60,
  'f64.eq': 0x61,
  'f64.ne': 0x62,
  'f64.lt': 0x63,
  'f64.gt': 0x64,
  'f64.le': 0x65,
  'f64.ge': 0x66,
  'i32.add': 0x6a,
  'i32.sub': 0x6b,
  'i32.mul': 0x6c,
  'i32.div_s': 0x6d,
  'i32.div_u': 0x6e,
  'i32.rem_s': 0x6f,
  'i32.rem_u': 0x70,
  'i32.and': 0x71,
  'i32.or': 0x72,
  'i32.xor': 0x73,
  'i32.shl': 0x74,
  'i32.shr_s': 0x75,
  'i32.shr_u': 0x76,
  'i64.mul': 0x7e,
  'i64.shr_u': 0x88,
  'i32.wrap_i64': 0xa7,
  'i64.extend_i32_u': 0xad,
  'f32.abs': 0x8b,
  'f32.neg': 0x8c,
  'f32.ceil': 0x8d,
  'f32.floor': 0x8e,
  'f32.trunc': 0x8f,
  'f32.nearest': 0x90,
  'f32.sqrt': 0x91,
  'f32.add': 0x92,
  'f32.sub': 0x93,
  'f32.mul': 0x94,
  'f32.div': 0x95,
  'f32.min': 0x96,
  'f32.max': 0x97,
  'f64.abs': 0x99,
  'f64.neg': 0x9a,
  'f64.ceil': 0x9b,
  'f64.floor': 0x9c,
  'f64.trunc': 0x9d,
  'f64.nearest': 0x9e,
  'f64.sqrt': 0x9f,
  'f64.add': 0xa0,
  'f64.sub': 0xa1,
  'f64.mul': 0xa2,
  'f64.div': 0xa3,
  'f64.min': 0xa4,
  'f64.max': 0xa5,
  'i32.trunc_f32_s': 0xa8,
  'i32.trunc_f64_s': 0xaa,
  'f32.convert_i32_s': 0xb2,
  'f32.convert_i32_u': 0xb3,
  'f32.demote_f64': 0xb6,
  'f64.convert_i32_s': 0xb7,
  'f64.convert_i32_u': 0xb8,
  'f64.promote_f32': 0xbb,
  'i32.reinterpret_f32': 0xbc,
  'f32.reinterpret_i32': 0xbe,
} as const;

// SIMD128 instructions without immediates: 0xfd, then the opcode as unsigned LEB128.
const SIMD = {
  'i8x16.swizzle': 0x0e,
  'i32x4.splat': 0x11,
  'f32x4.splat': 0x13,
  'f64x2.splat': 0x14,
  'f32x4.eq': 0x41,
  'f32x4.ne': 0x42,
  'f32x4.lt': 0x43,
  'f32x4.gt': 0x44,
  'f32x4.le': 0x45,
  'f32x4.ge': 0x46,
  'f64x2.eq': 0x47,
  'f64x2.ne': 0x48,
  'f64x2.lt': 0x49,
  'f64x2.gt': 0x4a,
  'f64x2.le': 0x4b,
  'f64x2.ge': 0x4c,
  'v128.not': 0x4d,
  'v128.and': 0x4e,
  'v128.andnot': 0x4f,
  'v128.or': 0x50,
  'v128.xor': 0x51,
  'v128.bitselect': 0x52,
  'v128.any_true': 0x53,
  'f32x4.demote_f64x2_zero': 0x5e,
  'f64x2.promote_low_f32x4': 0x5f,
  'i32x4.eq': 0x37,
  'i32x4.shl': 0xab,
  'i32x4.add': 0xae,
  'i32x4.sub': 0xb1,
  'i32x4.mul': 0xb5,
  'f32x4.abs': 0xe0,
  'f32x4.neg': 0xe1,
  'f32x4.sqrt': 0xe3,
  'f32x4.add': 0xe4,
  'f32x4.sub': 0xe5,
  'f32x4.mul': 0xe6,
  'f32x4.div': 0xe7,
  'f32x4.min': 0xe8,
  'f32x4.max': 0xe9,
  'f32x4.pmin': 0xea,
  'f32x4.pmax': 0xeb,
  'f32x4.ceil': 0x67,
  'f32x4.floor': 0x68,
  'f32x4.trunc': 0x69,
  'f32x4.nearest': 0x6a,
  'f64x2.ceil': 0x74,
  'f64x2.floor': 0x75,
  'f64x2.trunc': 0x7a,
  'f64x2.nearest': 0x94,
  'i64x2.shl': 0xcb,
  'i64x2.shr_u': 0xcd,
  'i64x2.add': 0xce,
  'i64x2.sub': 0xd1,
  'f64x2.abs': 0xec,
  'f64x2.neg': 0xed,
  'f64x2.sqrt': 0xef,
  'f64x2.add': 0xf0,
  'f64x2.sub': 0xf1,
  'f64x2.mul': 0xf2,
  'f64x2.div': 0xf3,
  'f64x2.min': 0xf4,
  'f64x2.max': 0xf5,
  'f64x2.pmin': 0xf6,
  'f64x2.pmax': 0xf7,
  'i32x4.trunc_sat_f32x4_s': 0xf8,
  // relaxed SIMD (a separate proposal: check `features().relaxedSimd` before emitting these)
  'f32x4.relaxed_madd': 0x105,
  'f32x4.relaxed_nmadd': 0x106,
} as const;

// Memory access instructions: opcode, and the natural alignment (log2 bytes) used by default.
const MEMORY = {
  'i32.load': [0x28, 2],
  'f32.load': [0x2a, 2],
  'f64.load': [0x2b, 3],
  'i32.load8_u': [0x2d, 0],
  'i32.load16_u': [0x2f, 1],
  'i32.store': [0x36, 2],
  'f32.store': [0x38, 2],
  'f64.store': [0x39, 3],
  'i32.store8': [0x3a, 0],
} as const;

const SIMD_MEMORY = {
  'v128.load': [0x00, 4],
  'v128.load32_splat': [0x09, 2],
  'v128.store': [0x0b, 4],
  'v128.load32_zero': [0x5c, 2],
  'v128.load64_zero': [0x5d, 3],
} as const;

const LANE = {
  'f32x4.extract_lane': 0x1f,
  'f32x4.replace_lane': 0x20,
  'f64x2.extract_lane': 0x21,
  'f64x2.replace_lane': 0x22,
  'i32x4.extract_lane': 0x1b,
  'i32x4.replace_lane': 0x1c,
} as const;

/** A scalar or SIMD instruction without immediates. */
export type PlainOp = keyof typeof PLAIN | keyof typeof SIMD;
/** A load or store, taking a static byte offset. */
export type MemoryOp = keyof typeof MEMORY | keyof typeof SIMD_MEMORY;
/** A lane access, taking a lane index. */
export type LaneOp = keyof typeof LANE;

/** A local variable (parameters come first), as returned by `FunctionBuilder.param/local`. */
export interface Local {
  readonly index: number;
  readonly type: ValType;
}

function uleb(out: number[], value: number): void {
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
}

function sleb(out: number[], value: number): void {
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function name(out: number[], s: string): void {
  const bytes = new TextEncoder().encode(s);
  uleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/**
 * Builds one function's body. Methods append instructions and return `this`, so a body is a
 * chain in stack order: `f.get(a).get(b).op('f32.add')`.
 */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly locals: ValType[] = [];
  private depth = 0;

  constructor(
    readonly name: string,
    readonly params: readonly ValType[],
    readonly results: readonly ValType[],
  ) {}

  /** The i-th parameter. */
  param(i: number): Local {
    if (i >= this.params.length) throw new Error(`${this.name}: no parameter ${i}`);
    return { index: i, type: this.params[i] };
  }

  /** Declares a new local (zero-initialised, as Wasm locals are). */
  local(type: ValType): Local {
    this.locals.push(type);
    return { index: this.params.length + this.locals.length - 1, type };
  }

  /** Appends one instruction without immediates. */
  op(...ops: PlainOp[]): this {
    for (const o of ops) {
      if (o in PLAIN) this.code.push(PLAIN[o as keyof typeof PLAIN]);
      else {
        this.code.push(0xfd);
        uleb(this.code, SIMD[o as keyof typeof SIMD]);
      }
    }
    return this;
  }

  get(l: Local): this {
    this.code.push(0x20);
    uleb(this.code, l.index);
    return this;
  }

  set(l: Local): this {
    this.code.push(0x21);
    uleb(this.code, l.index);
    return this;
  }

  tee(l: Local): this {
    this.code.push(0x22);
    uleb(this.code, l.index);
    return this;
  }

  i32(value: number): this {
    this.code.push(0x41);
    sleb(this.code, value);
    return this;
  }

  /** An i64 constant from a safe integer (or a bigint for the full range). */
  i64(value: number | bigint): this {
    this.code.push(0x42);
    let v = BigInt.asIntN(64, BigInt(value));
    for (;;) {
      const byte = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
      this.code.push(done ? byte : byte | 0x80);
      if (done) return this;
    }
  }

  f32(value: number): this {
    this.code.push(0x43);
    const b = new Uint8Array(new Float32Array([value]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }

  f64(value: number): this {
    this.code.push(0x44);
    const b = new Uint8Array(new Float64Array([value]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }

  /** A load or store with a static byte `offset` added to the address on the stack. */
  mem(op: MemoryOp, offset = 0): this {
    if (op in MEMORY) {
      const [code, align] = MEMORY[op as keyof typeof MEMORY];
      this.code.push(code);
      uleb(this.code, align);
    } else {
      const [code, align] = SIMD_MEMORY[op as keyof typeof SIMD_MEMORY];
      this.code.push(0xfd);
      uleb(this.code, code);
      uleb(this.code, align);
    }
    uleb(this.code, offset);
    return this;
  }

  /** `v128.store64_lane`: stores lane `lane` (64 bits) of the v128 on the stack at the address below it. */
  store64Lane(lane: number, offset = 0): this {
    this.code.push(0xfd, 0x5b, 3);
    uleb(this.code, offset);
    this.code.push(lane);
    return this;
  }

  /** `i8x16.shuffle`: byte i of the result is byte lanes[i] of the two v128s below (0–15 the first, 16–31 the second). */
  shuffle(lanes: readonly number[]): this {
    if (lanes.length !== 16 || lanes.some((l) => l < 0 || l > 31))
      throw new Error(`shuffle: 16 lanes in 0..31, got ${lanes}`);
    this.code.push(0xfd, 0x0d, ...lanes);
    return this;
  }

  lane(op: LaneOp, lane: number): this {
    this.code.push(0xfd);
    uleb(this.code, LANE[op]);
    this.code.push(lane);
    return this;
  }

  /** Calls a function of the same module by its builder, or a function it imports. */
  call(fn: FunctionBuilder | ImportedFunction, module: ModuleBuilder): this {
    this.code.push(0x10);
    uleb(this.code, module.indexOf(fn));
    return this;
  }

  /** `block … end`: a `br` to it jumps past its end. */
  block(body: () => void): this {
    return this.structured(0x02, body);
  }

  /** `loop … end`: a `br` to it jumps back to its start. */
  loop(body: () => void): this {
    return this.structured(0x03, body);
  }

  /** `if … [else …] end`, consuming an i32 condition. */
  if(then: () => void, otherwise?: () => void): this {
    this.code.push(0x04, 0x40);
    this.depth++;
    then();
    if (otherwise) {
      this.code.push(0x05);
      otherwise();
    }
    this.code.push(0x0b);
    this.depth--;
    return this;
  }

  /** Branch to the enclosing label `label` levels out (0 is the innermost). */
  br(label: number): this {
    this.code.push(0x0c);
    uleb(this.code, label);
    return this;
  }

  brIf(label: number): this {
    this.code.push(0x0d);
    uleb(this.code, label);
    return this;
  }

  /**
   * `for (i = from; i < to; i += step) body()` over signed i32s; `to` is re-read each turn.
   * Inside `body`, `br(0)` continues and `br(2)` breaks.
   */
  for(i: Local, from: Local | number, to: Local | number, step: number, body: () => void): this {
    this.push(from).set(i);
    return this.block(() => {
      this.loop(() => {
        this.get(i).push(to).op('i32.ge_s').brIf(1);
        this.block(body);
        this.get(i).i32(step).op('i32.add').set(i).br(0);
      });
    });
  }

  /** Pushes a local's value or an i32 constant. */
  push(x: Local | number): this {
    return typeof x === 'number' ? this.i32(x) : this.get(x);
  }

  /** Body bytes as the code section stores them (locals run-length encoded, then `end`). */
  encode(): number[] {
    if (this.depth !== 0) throw new Error(`${this.name}: unbalanced control flow`);
    const out: number[] = [];
    const runs: [number, ValType][] = [];
    for (const t of this.locals) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    uleb(out, runs.length);
    for (const [n, t] of runs) {
      uleb(out, n);
      out.push(VALTYPE[t]);
    }
    for (const b of this.code) out.push(b);
    out.push(0x0b);
    return out;
  }

  private structured(opcode: number, body: () => void): this {
    this.code.push(opcode, 0x40);
    this.depth++;
    body();
    this.code.push(0x0b);
    this.depth--;
    return this;
  }
}

/** Limits of the memory a module imports as `env.memory`. */
export interface MemoryImport {
  /** Minimum size in 64 KiB pages. */
  initial: number;
  /** Maximum size in pages (required for shared memory). */
  maximum?: number;
  /** Whether the memory is shared between threads (needs a SharedArrayBuffer-backed memory). */
  shared: boolean;
}

/** A function a module imports from `env` (`ModuleBuilder.importFunction`). */
export interface ImportedFunction {
  /** Its name in `env`. */
  readonly name: string;
  readonly params: readonly ValType[];
  readonly results: readonly ValType[];
}

/**
 * Collects functions (all exported by name) into a module that imports one memory and, where
 * asked, functions from `env`.
 */
export class ModuleBuilder {
  private readonly functions: FunctionBuilder[] = [];
  private readonly imports: ImportedFunction[] = [];

  constructor(readonly memory: MemoryImport | null = null) {}

  /**
   * Adds a function, exported under `name`; build its body on the returned builder.
   *
   * @example
   * const m = new ModuleBuilder();
   * const f = m.function('add', ['i32', 'i32'], ['i32']);
   * f.get(f.param(0)).get(f.param(1)).op('i32.add');
   * const { add } = new WebAssembly.Instance(new WebAssembly.Module(m.encode())).exports;
   */
  function(name: string, params: readonly ValType[], results: readonly ValType[]): FunctionBuilder {
    const f = new FunctionBuilder(name, params, results);
    this.functions.push(f);
    return f;
  }

  /**
   * Declares a function imported as `env.<name>` (imports come first in the function index
   * space, so declare them before calls are emitted).
   *
   * @example
   * const log = m.importFunction('log', ['f64'], ['f64']); // instantiate with { env: { log: Math.log } }
   * f.get(x).call(log, m);
   */
  importFunction(name: string, params: readonly ValType[], results: readonly ValType[]): ImportedFunction {
    const fn = { name, params, results };
    this.imports.push(fn);
    return fn;
  }

  /** The function added under `name` (for calls between emitters in different files). */
  find(name: string): FunctionBuilder {
    const f = this.functions.find((g) => g.name === name);
    if (!f) throw new Error(`function ${name} is not in this module (emit it first)`);
    return f;
  }

  indexOf(fn: FunctionBuilder | ImportedFunction): number {
    if (!(fn instanceof FunctionBuilder)) {
      const j = this.imports.indexOf(fn);
      if (j < 0) throw new Error(`function ${fn.name} is not imported by this module`);
      return j;
    }
    const i = this.functions.indexOf(fn);
    if (i < 0) throw new Error(`function ${fn.name} is not in this module`);
    return this.imports.length + i;
  }

  /** The module's binary. */
  encode(): Uint8Array<ArrayBuffer> {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    const types: string[] = [];
    const typeIndex = (f: { params: readonly ValType[]; results: readonly ValType[] }) => {
      const key = `${f.params.join(',')}>${f.results.join(',')}`;
      let i = types.indexOf(key);
      if (i < 0) i = types.push(key) - 1;
      return i;
    };
    const importTypes = this.imports.map(typeIndex);
    const typeOf = this.functions.map(typeIndex);
    section(out, 1, (s) => {
      uleb(s, types.length);
      for (const key of types) {
        const [ps, rs] = key.split('>').map((x) => (x ? (x.split(',') as ValType[]) : []));
        s.push(0x60);
        uleb(s, ps.length);
        for (const p of ps) s.push(VALTYPE[p]);
        uleb(s, rs.length);
        for (const r of rs) s.push(VALTYPE[r]);
      }
    });
    const mem = this.memory;
    if (mem || this.imports.length > 0) {
      section(out, 2, (s) => {
        uleb(s, this.imports.length + (mem ? 1 : 0));
        this.imports.forEach((fn, i) => {
          name(s, 'env');
          name(s, fn.name);
          s.push(0x00);
          uleb(s, importTypes[i]);
        });
        if (!mem) return;
        name(s, 'env');
        name(s, 'memory');
        s.push(0x02);
        if (mem.shared && mem.maximum === undefined) throw new Error('a shared memory needs a maximum');
        s.push(mem.maximum === undefined ? 0x00 : mem.shared ? 0x03 : 0x01);
        uleb(s, mem.initial);
        if (mem.maximum !== undefined) uleb(s, mem.maximum);
      });
    }
    section(out, 3, (s) => {
      uleb(s, this.functions.length);
      for (const t of typeOf) uleb(s, t);
    });
    section(out, 7, (s) => {
      uleb(s, this.functions.length);
      this.functions.forEach((f, i) => {
        name(s, f.name);
        s.push(0x00);
        uleb(s, this.imports.length + i);
      });
    });
    section(out, 10, (s) => {
      uleb(s, this.functions.length);
      for (const f of this.functions) {
        const body = f.encode();
        uleb(s, body.length);
        for (const b of body) s.push(b);
      }
    });
    // the custom "name" section (function names, subsection 1): profilers and stack traces then
    // say `gemm` or `softmax` where they said `wasm-function[2]`
    section(out, 0, (s) => {
      name(s, 'name');
      const names: number[] = [];
      const all = [...this.imports, ...this.functions];
      uleb(names, all.length);
      all.forEach((f, i) => {
        uleb(names, i);
        name(names, f.name);
      });
      s.push(1);
      uleb(s, names.length);
      for (const b of names) s.push(b);
    });
    return new Uint8Array(out);
  }
}

function section(out: number[], id: number, fill: (s: number[]) => void): void {
  const s: number[] = [];
  fill(s);
  out.push(id);
  uleb(out, s.length);
  for (const b of s) out.push(b);
}

/** What this engine's WebAssembly supports, probed once by validating tiny modules. */
export interface WasmFeatures {
  /** SIMD128 (every current engine; Node ≥ 16). */
  simd: boolean;
  /** Relaxed SIMD (`f32x4.relaxed_madd` = FMA on x86 with FMA3 / Arm): V8 ≥ 11.4, not Node 20. */
  relaxedSimd: boolean;
  /** Shared memory and atomics (needs SharedArrayBuffer: Node, or a cross-origin-isolated page). */
  threads: boolean;
}

let probed: WasmFeatures | null = null;

/**
 * Probes the engine's WebAssembly features (cached).
 *
 * @example
 * features().simd; // true in Node 20
 * features().relaxedSimd; // false in Node 20 (V8 11.3) unless run with --experimental-wasm-relaxed-simd
 */
export function features(): WasmFeatures {
  if (probed) return probed;
  const probe = (emit: (f: FunctionBuilder) => void, result: ValType): boolean => {
    const m = new ModuleBuilder();
    emit(m.function('f', [], [result]));
    return WebAssembly.validate(m.encode());
  };
  const simd = probe((f) => f.f32(1).op('f32x4.splat', 'f32x4.abs'), 'v128');
  const relaxedSimd =
    simd &&
    probe(
      (f) =>
        f.f32(1).op('f32x4.splat').f32(1).op('f32x4.splat').f32(1).op('f32x4.splat', 'f32x4.relaxed_madd'),
      'v128',
    );
  let threads = false;
  if (typeof SharedArrayBuffer !== 'undefined') {
    try {
      threads =
        new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
    } catch {
      threads = false;
    }
  }
  probed = { simd, relaxedSimd, threads };
  return probed;
}

/**
 * Emits `acc + a·b` on f32x4 values, each pushed by its callback: one fused `relaxed_madd`
 * where the engine has it, else a mul then an add (two roundings). Callers pass the same
 * `fused` for every thread, so results never depend on which thread computed them.
 *
 * @example
 * madd(f, features().relaxedSimd, () => f.get(a), () => f.get(b), () => f.get(acc));
 * f.set(acc);
 */
export function madd(
  f: FunctionBuilder,
  fused: boolean,
  a: () => void,
  b: () => void,
  acc: () => void,
): void {
  if (fused) {
    a();
    b();
    acc();
    f.op('f32x4.relaxed_madd');
    return;
  }
  acc();
  a();
  b();
  f.op('f32x4.mul', 'f32x4.add');
}
