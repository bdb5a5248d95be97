import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { TrainProgress } from '../src/train-progress.js';

describe('TrainProgress', () => {
  it('draws a bar with the step, loss, last validation loss, tokens/s and ETA', () => {
    let out = '';
    const stream = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    const p = new TrainProgress(2, 6, 1000, stream);
    const now = vi.spyOn(performance, 'now');
    // 2 steps of 1,000 tokens in 0.5 s from the (resumed) step 2: 4,000 tokens/s
    now.mockReturnValue((p as unknown as { t0: number }).t0 + 500); // t0: when the bar started
    p.update(4, 2.5, 2.75, 1e-3);
    p.stop();
    now.mockRestore();
    const last =
      out
        .split(/\r|\n/)
        .filter((l) => l.includes('step'))
        .at(-1) ?? '';
    expect(last).toMatch(/^step 4\/6 \S+ loss 2\.5000 val 2\.7500 \| 4,000 tok\/s \| ETA \S+/);
  });

  it('prints a plain line per step when not on a terminal', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const p = new TrainProgress(0, 3, 10); // vitest's stdout is not a terminal
    p.update(1, 1.25, null, 2e-3);
    p.update(3, 1, 0.5, 1e-3);
    p.stop();
    expect(log.mock.calls.map((c) => String(c[0]).replace(/ \d+ tok\/s$/, ''))).toEqual([
      'step 1/3 loss 1.2500 lr 2.00e-3',
      'step 3/3 loss 1.0000 val 0.5000 lr 1.00e-3',
    ]);
    log.mockRestore();
  });
});
