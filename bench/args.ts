/** Command-line flags of the benchmarks: `--name value` or `--name=value`. */
export function arg(name: string, fallback: string): string {
  const argv = process.argv;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return fallback;
}

/** A numeric flag. */
export function numberArg(name: string, fallback: number): number {
  return Number(arg(name, String(fallback)));
}
