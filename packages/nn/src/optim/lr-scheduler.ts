import { OpError } from '@lowrank/tensor';
import type { BaseOptions, Optimizer } from './optimizer.js';

/** A learning-rate multiplier as a function of the step count (0 at construction). */
export type LrLambda = (step: number) => number;

/** A scheduler's saved state. */
export interface SchedulerStateDict {
  /** Steps taken. */
  lastEpoch: number;
}

/**
 * Sets each group's lr to `initialLr · λ(step)` (PyTorch's `LambdaLR`). Construction applies
 * λ(0); call `step()` after each `optimizer.step()`.
 *
 * @example
 * const sched = new LambdaLR(opt, warmupCosineLambda({ warmupSteps: 100, totalSteps: 1000 }));
 * for (...) { opt.step(); sched.step(); }
 */
export class LambdaLR {
  /** Steps taken so far (PyTorch's name). */
  lastEpoch = 0;
  /** The multiplier function of each group. */
  readonly lambdas: LrLambda[];
  /** Each group's learning rate before scaling (`initialLr`). */
  readonly baseLrs: number[];

  constructor(
    /** The optimizer whose learning rates are set. */
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

  /** The state to save (the step count). */
  stateDict(): SchedulerStateDict {
    return { lastEpoch: this.lastEpoch };
  }

  /** Restores the step count and sets the learning rates for it. */
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

/** Options of schedules with a linear warmup. */
export interface WarmupOptions {
  /** Steps of linear warmup from 0 to the base lr (default 0). */
  warmupSteps?: number;
}

/** Options of schedules with warmup then decay. */
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

/**
 * λ = 1 after an optional linear warmup (Hugging Face's `get_constant_schedule_with_warmup`).
 *
 * @example
 * const f = optim.constantLambda({ warmupSteps: 10 });
 * f(5); // 0.5
 * f(100); // 1
 */
export function constantLambda(options: WarmupOptions = {}): LrLambda {
  const w = options.warmupSteps ?? 0;
  return (step) => (step < w ? warmup(step, w) : 1);
}

/**
 * Linear warmup, then linear decay to `minLrRatio` at `totalSteps` (`get_linear_schedule_with_warmup`).
 *
 * @example
 * const f = optim.warmupLinearLambda({ warmupSteps: 10, totalSteps: 110 });
 * f(10); // 1
 * f(60); // 0.5
 */
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
 *
 * @example
 * const f = optim.warmupCosineLambda({ warmupSteps: 10, totalSteps: 110 });
 * f(60); // 0.5
 * f(110); // 0
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

/**
 * A constant schedule (with optional warmup).
 *
 * @example
 * const sched = optim.constantSchedule(opt, { warmupSteps: 100 });
 */
export function constantSchedule(optimizer: Optimizer<BaseOptions>, options: WarmupOptions = {}): LambdaLR {
  return new LambdaLR(optimizer, constantLambda(options));
}

/**
 * Linear warmup + linear decay.
 *
 * @example
 * const sched = optim.linearSchedule(opt, { warmupSteps: 100, totalSteps: 1000 });
 */
export function linearSchedule(optimizer: Optimizer<BaseOptions>, options: DecayOptions): LambdaLR {
  return new LambdaLR(optimizer, warmupLinearLambda(options));
}

/**
 * Linear warmup + cosine decay.
 *
 * @example
 * const sched = optim.cosineSchedule(opt, { warmupSteps: 100, totalSteps: 1000 });
 */
export function cosineSchedule(optimizer: Optimizer<BaseOptions>, options: DecayOptions): LambdaLR {
  return new LambdaLR(optimizer, warmupCosineLambda(options));
}
