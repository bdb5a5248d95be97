/**
 * Command-line parsing for the example scripts: `--help` prints the usage, and a bad flag or value
 * prints one clear line (no stack trace) and exits with status 2, as a shell tool should.
 */
import { parseArgs } from 'node:util';

/** One flag: a value (`--steps 10`) or a switch (`--quick`), with its help line. */
export interface Flag {
  /** What --help says. */
  help: string;
  /** 'boolean' for a switch; a value flag by default. */
  type?: 'boolean';
  /** The default value, shown in --help. */
  default?: string | boolean;
  /** Allowed values. */
  choices?: readonly string[];
  /** The value must be an integer ≥ 1. */
  positiveInt?: boolean;
  /** The value must be a number > 0. */
  positive?: boolean;
}

/** Why the arguments cannot be used (printed as one line). */
export class UsageError extends Error {}

/**
 * Parses `argv` against `flags`: the values by flag name, or `{ help: true }` text to print.
 * Throws `UsageError` for an unknown flag, a missing value, or a value its flag refuses.
 *
 * @example
 * const r = parseFlags(['--steps', '5'], { steps: { help: 'optimizer steps', positiveInt: true } });
 * // r.values.steps === '5'
 */
export function parseFlags(
  argv: readonly string[],
  flags: Readonly<Record<string, Flag>>,
  usage: string,
): { values: Record<string, string | boolean | undefined>; help: string | null } {
  const help = [
    usage,
    '',
    'Options:',
    ...Object.entries(flags).map(([name, f]) => {
      const left = `  --${name}${f.type === 'boolean' ? '' : ` <${f.choices ? f.choices.join('|') : 'value'}>`}`;
      const def = f.default === undefined || f.default === false ? '' : ` (default: ${String(f.default)})`;
      return `${left.padEnd(30)} ${f.help}${def}`;
    }),
    `${'  --help'.padEnd(30)} show this help`,
  ].join('\n');
  let values: Record<string, string | boolean | undefined>;
  try {
    const options: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }> = {
      help: { type: 'boolean' },
    };
    for (const [name, f] of Object.entries(flags))
      options[name] = {
        type: f.type ?? 'string',
        ...(f.default === undefined ? {} : { default: f.default }),
      };
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    // node's messages are one line already; drop its "To specify a positional argument…" advice
    throw new UsageError(`${(e as Error).message.split('. To specify')[0]} (see --help)`);
  }
  if (values.help) return { values, help };
  for (const [name, f] of Object.entries(flags)) {
    const v = values[name];
    if (typeof v !== 'string') continue;
    if (f.choices && !f.choices.includes(v))
      throw new UsageError(`--${name} must be one of ${f.choices.join(', ')}, got '${v}'`);
    if (f.positiveInt && !(Number.isInteger(Number(v)) && Number(v) >= 1))
      throw new UsageError(`--${name} must be an integer ≥ 1, got '${v}'`);
    if (f.positive && !(Number(v) > 0 && Number.isFinite(Number(v))))
      throw new UsageError(`--${name} must be a number > 0, got '${v}'`);
  }
  return { values, help: null };
}

/**
 * `parseFlags` for a script's own process: prints the help and exits 0, or prints a usage error
 * and exits 2.
 *
 * @example
 * const args = cliFlags('demo', { quick: { type: 'boolean', help: 'a short run' } }, 'Usage: pnpm demo [options]');
 */
export function cliFlags(
  name: string,
  flags: Readonly<Record<string, Flag>>,
  usage: string,
): Record<string, string | boolean | undefined> {
  try {
    const r = parseFlags(process.argv.slice(2), flags, usage);
    if (r.help !== null) {
      console.log(r.help);
      process.exit(0);
    }
    return r.values;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${name}: ${e.message}`);
    process.exit(2);
  }
}
