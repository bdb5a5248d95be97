import { SingleBar } from 'cli-progress';

/**
 * The progress of `lowrank train`: on a terminal one bar with the step, loss, tokens/s and ETA,
 * redrawn in place (with the last validation loss measured); elsewhere (a pipe, a
 * log file, the tests) one plain line per step, which is what a log needs.
 */
export class TrainProgress {
  private readonly bar: SingleBar | null;
  private readonly t0 = performance.now();
  private readonly first: number;

  /**
   * @param start the step the run starts from (a resumed run's saved step)
   * @param total the run's last step
   * @param tokensPerStep batch size × block size
   * @param stream where a bar is drawn: stdout (the default) when it is a terminal, else no bar;
   *   another stream always gets one (the tests pass one)
   */
  constructor(
    start: number,
    private readonly total: number,
    private readonly tokensPerStep: number,
    stream?: NodeJS.WritableStream,
  ) {
    this.first = start;
    const tty = stream !== undefined || process.stdout.isTTY === true;
    this.bar = tty
      ? new SingleBar({
          stream: stream ?? process.stdout,
          noTTYOutput: stream !== undefined,
          format: 'step {value}/{total} {bar} loss {loss} val {val} | {tps} tok/s | ETA {eta_formatted}',
          barsize: 24,
          hideCursor: true,
          etaBuffer: 20,
        })
      : null;
    this.bar?.start(total, start, { loss: '-', val: '-', tps: '-' });
  }

  /** Reports step `step` (its loss, a validation loss when one was measured, the lr). */
  update(step: number, loss: number, val: number | null, lr: number): void {
    const seconds = (performance.now() - this.t0) / 1000;
    const tps = seconds > 0 ? Math.round(((step - this.first) * this.tokensPerStep) / seconds) : 0;
    if (!this.bar) {
      const valText = val === null ? '' : ` val ${val.toFixed(4)}`;
      console.log(
        `step ${step}/${this.total} loss ${loss.toFixed(4)}${valText} lr ${lr.toExponential(2)} ${tps} tok/s`,
      );
      return;
    }
    const payload: Record<string, string> = { loss: loss.toFixed(4), tps: tps.toLocaleString('en-US') };
    if (val !== null) payload.val = val.toFixed(4);
    this.bar.update(step, payload);
  }

  /** Ends the bar (idempotent; nothing to do for line output). */
  stop(): void {
    this.bar?.stop();
  }
}
