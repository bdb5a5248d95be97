/** Options for the WebGPU backend. */
export interface WebGPUInitOptions {
  powerPreference?: 'low-power' | 'high-performance';
}

/** Creates and registers the WebGPU backend. (Implemented by the WebGPU backend work.) */
export async function createWebGPUBackend(_options: WebGPUInitOptions): Promise<void> {
  throw new Error('the WebGPU backend is not implemented yet');
}
