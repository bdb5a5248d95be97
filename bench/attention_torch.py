"""PyTorch reference for bench/attention-gpu.ts: forward and forward + backward ms of
torch.nn.functional.scaled_dot_product_attention, causal, float32, TF32 off (as lowrank's
WebGPU kernels use plain f32 FMAs), at B=8, H=12, D=64 and T = 512, 1024 (flags override;
`--hkv 3` makes it GQA, timed with enable_gqa and with the kv heads repeated as transformers does)."""
import argparse

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

p = argparse.ArgumentParser()
p.add_argument("--b", type=int, default=8)
p.add_argument("--h", type=int, default=12)
p.add_argument("--d", type=int, default=64)
p.add_argument("--hkv", type=int, default=0, help="kv heads (GQA); 0: as many as --h")
p.add_argument("--t", default="512,1024")
a = p.parse_args()
hkv = a.hkv or a.h
gqa = hkv != a.h
dev = torch.device("cuda")
print(f"device {torch.cuda.get_device_name()}; torch {torch.__version__}; B={a.b} H={a.h} HKV={hkv} D={a.d} causal float32")


def time_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        best = min(best, s.elapsed_time(e) / reps)
    return best


for T in [int(t) for t in a.t.split(",")]:
    torch.manual_seed(0)
    q = torch.randn(a.b, a.h, T, a.d, device=dev, requires_grad=True)
    k, v = (torch.randn(a.b, hkv, T, a.d, device=dev, requires_grad=True) for _ in range(2))
    g = torch.randn(a.b, a.h, T, a.d, device=dev)
    reps = 10 if T >= 1024 else 20

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)

    def fb():
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa).backward(g)
        q.grad = k.grad = v.grad = None

    print(f"RESULT torch T={T} forward_ms {time_ms(fwd, reps):.3f} fwd_bwd_ms {time_ms(fb, reps):.3f}")
    if gqa:
        # transformers' Llama repeats the kv heads (repeat_kv) and calls SDPA on as many heads as q
        def fb_repeat():
            r = a.h // hkv
            kr, vr = (x.repeat_interleave(r, dim=1) for x in (k, v))
            F.scaled_dot_product_attention(q, kr, vr, is_causal=True).backward(g)
            q.grad = k.grad = v.grad = None

        print(f"RESULT torch-repeat-kv T={T} fwd_bwd_ms {time_ms(fb_repeat, reps):.3f}")
    q1 = torch.randn(a.b, a.h, 1, a.d, device=dev)

    def dec():
        with torch.no_grad():
            F.scaled_dot_product_attention(q1, k, v, enable_gqa=gqa)

    print(f"RESULT torch decode S={T} forward_ms {time_ms(dec, 50):.4f}")
