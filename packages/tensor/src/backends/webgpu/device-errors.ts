import { OpError } from '../../errors.js';

/**
 * Error plumbing of a WebGPU device: error scopes around each batch of GPU work, device loss,
 * uncaptured errors, and `check`, which throws whatever they reported since the last check.
 */
export class DeviceErrors {
  private scopeOpen = false;
  private readonly scopeResults: Promise<GPUError | null>[] = [];
  private asyncError: Error | null = null;
  private lostError: Error | null = null;
  private destroyedFlag = false;

  constructor(private readonly device: GPUDevice) {
    void device.lost.then((info) => {
      if (this.destroyedFlag && info.reason === 'destroyed') return;
      this.lostError = new Error(`webgpu: the GPU device was lost (${info.reason}): ${info.message}`);
    });
    device.addEventListener('uncapturederror', (event) => {
      const e = (event as GPUUncapturedErrorEvent).error;
      this.asyncError ??= new Error(`webgpu: ${e.constructor.name}: ${e.message}`);
    });
    this.openScope();
  }

  /** Whether the device was destroyed on purpose (`markDestroyed`). */
  get destroyed(): boolean {
    return this.destroyedFlag;
  }

  /** Records that the device is being destroyed on purpose (its loss is then no error). */
  markDestroyed(): void {
    this.destroyedFlag = true;
  }

  /** Opens the out-of-memory, validation and internal scopes, unless they are open already. */
  openScope(): void {
    if (this.scopeOpen) return;
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('internal');
    this.scopeOpen = true;
  }

  /** Closes the open scopes; what they caught is reported by a later `check`. */
  closeScope(): void {
    if (!this.scopeOpen) return;
    this.scopeOpen = false;
    for (let i = 0; i < 3; i++) {
      const p = this.device.popErrorScope().then(
        (e) => {
          if (e) this.asyncError ??= new Error(`webgpu: ${e.constructor.name}: ${e.message}`);
          return e;
        },
        () => null,
      );
      this.scopeResults.push(p);
    }
  }

  /** The results of the scopes closed so far, removed from the list (a read-back awaits them). */
  takeScopes(): Promise<GPUError | null>[] {
    return this.scopeResults.splice(0);
  }

  /** Throws an error reported asynchronously since the last check (device loss, validation, OOM). */
  check(op = 'webgpu'): void {
    if (this.destroyedFlag)
      throw new OpError(op, 'the WebGPU device was destroyed (destroyWebGPU); call init again');
    if (this.lostError) throw this.lostError;
    if (this.asyncError) {
      const e = this.asyncError;
      this.asyncError = null;
      throw e;
    }
  }
}
