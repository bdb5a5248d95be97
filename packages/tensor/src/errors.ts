/** Error thrown for invalid arguments to an op: the message starts with the op's name. */
export class OpError extends Error {
  constructor(
    /** Name of the op that refused its arguments. */
    readonly op: string,
    message: string,
  ) {
    super(`${op}: ${message}`);
    this.name = 'OpError';
  }
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
