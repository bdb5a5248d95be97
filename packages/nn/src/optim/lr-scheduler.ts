import { OpError } from '@lowrank/tensor';
import type { BaseOptions, Optimizer } from './optimizer.js';

/** A learning-rate multiplier as a function of the step count (0 at construction). */
export type LrLambda = (step: number) => number;

export interface SchedulerStateDict {
  lastEpoch: number;
}

/**
 * Sets each group's lr to `initialLr · λ(step)` (PyTorch's `LambdaLR`). Construction applies
 * λ(0); call `step()` after each `optimizer.step()`.
 *
 * @example
 * const sched = new LambdaLR(opt, warmupCosine({ warmupSteps: 100, totalSteps: 1000 }));
 * for (...) { opt.step(); sched.step(); }
 */
export class LambdaLR {
  lastEpoch = 0;
  readonly lambdas: LrLambda[];
  readonly baseLrs: number[];

  constructor(
    readonly optimizer: Optimizer<BaseOptions>,
    lrLambda: LrLambda | readonly LrLambda[],
  ) {
    const groups = optimizer.paramGroups;
    if (Array.isArray(lrLambda) && lrLambda.length !== groups.length) {
      throw new OpError(
        'LambdaLR',
        `expected ${groups.length} lambdas (one per group), got ${lrLambda.length}`,
      );
    }
    this.lambdas = groups.map((_, i) =>
      typeof lrLambda === 'function' ? lrLambda : (lrLambda as LrLambda[])[i],
    );
    for (const g of groups) g.initialLr ??= g.lr;
    this.baseLrs = groups.map((g) => g.initialLr ?? g.lr);
    this.apply();
  }

  private apply(): void {
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = this.baseLrs[i] * this.lambdas[i](this.lastEpoch);
    });
  }

  /** Advances one step and sets the new learning rates. */
  step(): void {
    this.lastEpoch++;
    this.apply();
  }

  /** The learning rates set last, one per group. */
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  stateDict(): SchedulerStateDict {
    return { lastEpoch: this.lastEpoch };
  }

  loadStateDict(sd: SchedulerStateDict): void {
    if (!Number.isInteger(sd.lastEpoch) || sd.lastEpoch < 0) {
      throw new OpError(
        'LambdaLR.loadStateDict',
        `lastEpoch must be a non-negative integer, got ${sd.lastEpoch}`,
      );
    }
    this.lastEpoch = sd.lastEpoch;
    this.apply();
  }
}

export interface WarmupOptions {
  /** Steps of linear warmup from 0 to the base lr (default 0). */
  warmupSteps?: number;
}

export interface DecayOptions extends WarmupOptions {
  /** Step at which the decay ends. */
  totalSteps: number;
  /** The lr at the end, as a fraction of the base lr (default 0). */
  minLrRatio?: number;
}

function warmup(step: number, warmupSteps: number): number {
  return step / Math.max(1, warmupSteps);
}

function checkDecay(op: string, o: DecayOptions): void {
  const w = o.warmupSteps ?? 0;
  if (
    !Number.isInteger(o.totalSteps) ||
    o.totalSteps <= 0 ||
    !Number.isInteger(w) ||
    w < 0 ||
    w > o.totalSteps
  ) {
    throw new OpError(op, `expected integers 0 ≤ warmupSteps ≤ totalSteps, got ${w} and ${o.totalSteps}`);
  }
}

/** λ = 1 after an optional linear warmup (Hugging Face's `get_constant_schedule_with_warmup`). */
export function constantLambda(options: WarmupOptions = {}): LrLambda {
  const w = options.warmupSteps ?? 0;
  return (step) => (step < w ? warmup(step, w) : 1);
}

/** Linear warmup, then linear decay to `minLrRatio` at `totalSteps` (`get_linear_schedule_with_warmup`). */
export function warmupLinearLambda(options: DecayOptions): LrLambda {
  checkDecay('warmupLinearLambda', options);
  const w = options.warmupSteps ?? 0;
  const min = options.minLrRatio ?? 0;
  return (step) => {
    if (step < w) return warmup(step, w);
    const frac = Math.max(0, (options.totalSteps - step) / Math.max(1, options.totalSteps - w));
    return min + (1 - min) * frac;
  };
}

/**
 * Linear warmup, then cosine decay to `minLrRatio` at `totalSteps`
 * (`get_cosine_schedule_with_warmup` with half a cycle).
 */
export function warmupCosineLambda(options: DecayOptions): LrLambda {
  checkDecay('warmupCosineLambda', options);
  const w = options.warmupSteps ?? 0;
  const min = options.minLrRatio ?? 0;
  return (step) => {
    if (step < w) return warmup(step, w);
    const progress = Math.min(1, (step - w) / Math.max(1, options.totalSteps - w));
    return min + (1 - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** A constant schedule (with optional warmup). */
export function constantSchedule(optimizer: Optimizer<BaseOptions>, options: WarmupOptions = {}): LambdaLR {
  return new LambdaLR(optimizer, constantLambda(options));
}

/** Linear warmup + linear decay. */
export function linearSchedule(optimizer: Optimizer<BaseOptions>, options: DecayOptions): LambdaLR {
  return new LambdaLR(optimizer, warmupLinearLambda(options));
}

/** Linear warmup + cosine decay. */
export function cosineSchedule(optimizer: Optimizer<BaseOptions>, options: DecayOptions): LambdaLR {
  return new LambdaLR(optimizer, warmupCosineLambda(options));
}
