/**
 * A stand-in for the part of vitest's API that packages/tensor/test/suite uses (describe, it,
 * beforeAll, afterAll, expect with a few matchers), so that the op suite runs unchanged in a
 * page. The page's Vite config aliases `vitest` to this file; `runRegistered` runs what the
 * suite registered, in order, and reports each test.
 */

type Hook = () => unknown;

interface Block {
  name: string;
  children: (Block | Test)[];
  beforeAll: Hook[];
  afterAll: Hook[];
}

interface Test {
  name: string;
  fn: Hook;
}

export interface TestResult {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

const root: Block = { name: '', children: [], beforeAll: [], afterAll: [] };
let current = root;

export function describe(name: string, body: () => void): void {
  const block: Block = { name, children: [], beforeAll: [], afterAll: [] };
  current.children.push(block);
  const parent = current;
  current = block;
  try {
    body();
  } finally {
    current = parent;
  }
}

export function it(name: string, fn: Hook, _timeout?: number): void {
  current.children.push({ name, fn });
}
export const test = it;

export function beforeAll(fn: Hook): void {
  current.beforeAll.push(fn);
}

export function afterAll(fn: Hook): void {
  current.afterAll.push(fn);
}

function show(v: unknown): string {
  try {
    const s = JSON.stringify(v, (_k, x: unknown) =>
      ArrayBuffer.isView(x) ? Array.from(x as unknown as ArrayLike<number>) : x,
    );
    return s === undefined ? String(v) : s.length > 200 ? `${s.slice(0, 200)}…` : s;
  } catch {
    return String(v);
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a === 'number' && typeof b === 'number') return a === b; // +0 == -0, as toEqual
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (a.constructor !== b.constructor) return false;
    return deepEqual(
      Array.from(a as unknown as ArrayLike<number>),
      Array.from(b as unknown as ArrayLike<number>),
    );
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

export interface Matchers {
  toBe(want: unknown): void;
  toEqual(want: unknown): void;
  toBeGreaterThanOrEqual(want: number): void;
  toBeLessThanOrEqual(want: number): void;
  toBeGreaterThan(want: number): void;
  toBeLessThan(want: number): void;
  toBeInstanceOf(want: abstract new (...args: never[]) => unknown): void;
  toBeTruthy(): void;
  toThrow(pattern?: string | RegExp): void;
  not: Omit<Matchers, 'not'>;
}

function matchers(got: unknown, negate: boolean): Matchers {
  const check = (ok: boolean, what: string): void => {
    if (ok === negate) throw new Error(`expected ${show(got)} ${negate ? 'not ' : ''}${what}`);
  };
  const m: Omit<Matchers, 'not'> = {
    toBe: (want) => check(Object.is(got, want), `to be ${show(want)}`),
    toEqual: (want) => check(deepEqual(got, want), `to equal ${show(want)}`),
    toBeGreaterThanOrEqual: (want) => check((got as number) >= want, `to be ≥ ${want}`),
    toBeLessThanOrEqual: (want) => check((got as number) <= want, `to be ≤ ${want}`),
    toBeGreaterThan: (want) => check((got as number) > want, `to be > ${want}`),
    toBeLessThan: (want) => check((got as number) < want, `to be < ${want}`),
    toBeInstanceOf: (want) => check(got instanceof want, `to be an instance of ${want.name}`),
    toBeTruthy: () => check(Boolean(got), 'to be truthy'),
    toThrow: (pattern) => {
      let thrown: unknown = null;
      try {
        (got as () => unknown)();
      } catch (e) {
        thrown = e;
      }
      const msg = thrown instanceof Error ? thrown.message : String(thrown);
      const ok =
        thrown !== null &&
        (pattern === undefined || (typeof pattern === 'string' ? msg.includes(pattern) : pattern.test(msg)));
      check(
        ok,
        `to throw ${pattern === undefined ? '' : String(pattern)} (threw: ${thrown === null ? 'nothing' : msg})`,
      );
    },
  };
  return m as Matchers;
}

export function expect(got: unknown): Matchers {
  const m = matchers(got, false);
  m.not = matchers(got, true);
  return m;
}

/** Runs every registered test whose full name passes `filter`; hooks run around their block. */
export async function runRegistered(
  filter: (fullName: string) => boolean,
  onResult: (r: TestResult) => void,
): Promise<TestResult[]> {
  const results: TestResult[] = [];
  const selected = (node: Block | Test, prefix: string): boolean =>
    'fn' in node
      ? filter(`${prefix}${node.name}`)
      : node.children.some((c) => selected(c, `${prefix}${node.name} > `));
  const walk = async (block: Block, prefix: string): Promise<void> => {
    if (!selected(block, prefix)) return;
    const here = block.name ? `${prefix}${block.name} > ` : prefix;
    for (const h of block.beforeAll) await h();
    for (const child of block.children) {
      if ('fn' in child) {
        const name = `${here}${child.name}`;
        if (!filter(name)) continue;
        const t0 = performance.now();
        let result: TestResult;
        try {
          await child.fn();
          result = { name, ok: true, ms: performance.now() - t0 };
        } catch (e) {
          result = {
            name,
            ok: false,
            ms: performance.now() - t0,
            error: e instanceof Error ? e.message : String(e),
          };
        }
        results.push(result);
        onResult(result);
      } else await walk(child, here);
    }
    for (const h of block.afterAll) await h();
  };
  await walk(root, '');
  return results;
}
