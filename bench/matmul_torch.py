"""PyTorch reference for bench/matmul-sweep.ts and bench/matmul-final.ts: f32 matmul (TF32 off) on
the issue-14 shapes (the list of bench/matmul-shapes.ts, same layouts: nt = x @ w.t(), tn = y.t() @ x),
and addmm with a bias on the forward shapes. ms per call: CUDA events around back-to-back calls,
best of 3. Prints a table and, with a path argument, writes JSON."""

import json
import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")
T, C, V = 4096, 768, 50257
SHAPES = [
    ("sq1024", 1024, 1024, 1024, "nn"),
    ("sq2048", 2048, 2048, 2048, "nn"),
    ("sq4096", 4096, 4096, 4096, "nn"),
    ("fwd.c_attn", T, C, 3 * C, "nt"),
    ("fwd.attn_proj", T, C, C, "nt"),
    ("fwd.c_fc", T, C, 4 * C, "nt"),
    ("fwd.mlp_proj", T, 4 * C, C, "nt"),
    ("fwd.lm_head", T, C, V, "nt"),
    ("dX.c_attn", T, 3 * C, C, "nn"),
    ("dX.attn_proj", T, C, C, "nn"),
    ("dX.c_fc", T, 4 * C, C, "nn"),
    ("dX.mlp_proj", T, C, 4 * C, "nn"),
    ("dX.lm_head", T, V, C, "nn"),
    ("dW.c_attn", 3 * C, T, C, "tn"),
    ("dW.attn_proj", C, T, C, "tn"),
    ("dW.c_fc", 4 * C, T, C, "tn"),
    ("dW.mlp_proj", C, T, 4 * C, "tn"),
    ("dW.wte", V, T, C, "tn"),
]


def time_ms(fn, min_ms=50.0):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    reps = 1
    while True:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        if s.elapsed_time(e) >= min_ms or reps >= 4096:
            break
        reps *= 2
    best = float("inf")
    for _ in range(3):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / reps)
    return best


rows = []
print(f"# matmul_torch: torch {torch.__version__}, {torch.cuda.get_device_name()}, f32, TF32 off")
for name, m, k, n, layout in SHAPES:
    a0 = torch.randn((k, m) if layout == "tn" else (m, k), device=dev)
    b0 = torch.randn((n, k) if layout == "nt" else (k, n), device=dev)
    a = a0.t() if layout == "tn" else a0
    b = b0.t() if layout == "nt" else b0
    ms = time_ms(lambda: torch.matmul(a, b))
    row = {"shape": name, "ms": ms, "tflops": 2 * m * k * n / ms / 1e9}
    if layout == "nt" and name.startswith("fwd"):
        bias = torch.randn(n, device=dev)
        res = torch.randn(m, n, device=dev)
        row["bias_ms"] = time_ms(lambda: torch.addmm(bias, a, b))
        row["bias_residual_ms"] = time_ms(lambda: torch.addmm(bias, a, b).add_(res))
    rows.append(row)
    extra = f"  addmm+bias {row['bias_ms']:.3f} ms" if "bias_ms" in row else ""
    print(f"{name:<14} {ms:8.3f} ms {row['tflops']:7.2f} TFLOP/s{extra}")
    del a0, b0, a, b
    torch.cuda.empty_cache()
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(rows, f, indent=1)
