"""PyTorch reference for bench/mlp-compile.ts: MLP training step (B=512, 1024-4096-1024, ReLU, MSE,
Adam lr 1e-3), f32, TF32 off; ms per step over steps back to back (best of 3 x 50)."""

import sys
import time

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
B, I, H, O = 512, 1024, 4096, 1024
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
dev = torch.device("cuda")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(I, H), torch.nn.ReLU(), torch.nn.Linear(H, O)).to(dev)
x = torch.randn(B, I, device=dev)
y = torch.randn(B, O, device=dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


def step():
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


for _ in range(10):
    step()
torch.cuda.synchronize()
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    best = min(best, (time.perf_counter() - t0) * 1e3 / steps)
print(f"# mlp_torch: torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 off")
print(f"RESULT mlp torch_ms {best:.3f}")
