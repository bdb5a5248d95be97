/**
 * The main demo (for now: tensors on the best available device).
 * Run: pnpm demo
 */
import * as lr from 'lowrank';

const { device, description } = await lr.init({ backend: 'auto' });
console.log(`lowrank demo on ${device} (${description})`);

lr.manualSeed(0);
const x = lr.randn([4, 3]);
const w = lr.randn([3, 2]);
const y = x.matmul(w).relu();
console.log('x @ w, relu  →', await y.toArray());
console.log('softmax(y)   →', await y.softmax(-1).toArray());
console.log('memory       →', lr.memory());
