import * as lr from './packages/tensor/src/index.js';
import { getKernel } from './packages/tensor/src/engine/registry.js';
import { cpuKernels } from './packages/tensor/src/backends/cpu/index.js';
import { LlamaForCausalLM } from './packages/models/src/llama.js';
import { applyLora } from './packages/lora/src/index.js';
import { exprKey } from './packages/tensor/src/expr/program.js';

await lr.init({ backend: 'cpu' });
const model = new LlamaForCausalLM({ model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true });
applyLora(model, { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'], seed: 0 });
const ids = lr.randint(0, 64, [2, 8], { dtype: 'int32' });
const log: string[] = [];
const saved: Record<string, unknown> = {};
const wrapped: Record<string, unknown> = {};
for (const name of Object.keys(cpuKernels)) {
  const k = getKernel('t', 'cpu', name as lr.KernelName) as (...a: unknown[]) => unknown;
  saved[name] = k;
  wrapped[name] = (...args: unknown[]) => {
    let extra = '';
    if (name === 'elementwise') { const p = args[0] as { root: never; shape: number[]; inputs: { shape: number[]; strides: number[] }[] }; extra = `${exprKey(p.root)} shape=${p.shape} in=${p.inputs.map((v) => v.strides.join(',')).join(' | ')}`; }
    log.push(`${name} ${extra}`);
    return k(...args);
  };
}
model.train();
lr.registerKernels('cpu', wrapped as Partial<lr.KernelTable>);
const loss = model.forward(ids, { labels: ids }).loss as lr.Tensor;
log.push('---- backward');
loss.backward();
lr.registerKernels('cpu', saved as Partial<lr.KernelTable>);
console.log(log.join('\n'));
