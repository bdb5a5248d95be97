"""PyTorch reference for bench/train-gpt2.ts (issue 9): the same GPT-2 training step on the same GPU.

GPT-2 124M (random init, HF config), batch 8 x 512, AdamW (lr 1e-4, wd 0.01), LoRA r=4 alpha=8 on
c_attn through peft ("lora") and full fine-tuning ("full"); f32 with TF32 off. Prints lines in the
same RESULT format as the TypeScript benchmark.

    python3 bench/train_gpt2_torch.py --mode lora        # options as train-gpt2.ts
"""

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

p = argparse.ArgumentParser()
p.add_argument("--mode", default="both")
p.add_argument("--layers", type=int, default=12)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--embd", type=int, default=768)
p.add_argument("--heads", type=int, default=12)
p.add_argument("--vocab", type=int, default=50257)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--infer", type=int, default=1)
p.add_argument("--attn", default=None, help="attn_implementation (default: transformers' choice)")
args = p.parse_args()

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")
B, T = args.batch, args.seq
MiB = 1024 * 1024


def new_model():
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=args.vocab, n_positions=max(1024, T), n_embd=args.embd, n_layer=args.layers,
        n_head=args.heads, resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout,
    )
    kw = {"attn_implementation": args.attn} if args.attn else {}
    m = GPT2LMHeadModel(cfg, **kw).to(dev)
    return m


def sync():
    torch.cuda.synchronize()


@torch.no_grad()
def infer_ms(model, ids):
    model.eval()
    times = []
    for i in range(2 + max(3, args.steps)):
        t0 = time.perf_counter()
        model(ids).logits
        sync()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    model.train()
    times.sort()
    return times[len(times) // 2]


def bench(kind):
    model = new_model()
    model.train()
    g = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(0, args.vocab, (B, T), device=dev, generator=g)
    base_ms = infer_ms(model, ids) if kind == "lora" and args.infer else float("nan")
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0, fan_in_fan_out=True)
        )
    params = [q for q in model.parameters() if q.requires_grad]
    n_params = sum(q.numel() for q in params)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    phases = []

    def step(timed):
        if timed:
            ev[0].record()
        loss = model(input_ids=ids, labels=ids).loss
        if timed:
            ev[1].record()
        loss.backward()
        if timed:
            ev[2].record()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if timed:
            ev[3].record()
        return loss

    first = None
    for i in range(args.warmup):
        loss = step(False)
        if i == 0:
            first = loss.item()
        sync()
    # phase breakdown: CUDA events, steps back to back except one sync per step to read them
    for _ in range(3):
        step(True)
        sync()
        phases.append((ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2]), ev[2].elapsed_time(ev[3])))
    torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step(False)
    last = loss.item()
    sync()
    wall = (time.perf_counter() - t0) * 1e3 / args.steps
    fwd, bwd, o = (sum(x[i] for x in phases) / len(phases) for i in range(3))
    print(f"\n## {kind} (torch {torch.__version__}, {torch.cuda.get_device_name()}), {n_params} trained parameters")
    print(f"attn_implementation {model.config._attn_implementation}")
    print(f"RESULT {kind} tokens_per_s {B * T / (wall / 1e3):.0f}")
    print(f"RESULT {kind} step_ms {wall:.2f}")
    print(f"loss: first {first:.4f}, last {last:.4f}")
    print(f"RESULT {kind} fwd_ms {fwd:.2f} bwd_ms {bwd:.2f} opt_ms {o:.2f}")
    print(
        f"RESULT {kind} peak_in_use_MiB {torch.cuda.max_memory_allocated() / MiB:.1f} "
        f"peak_reserved_MiB {torch.cuda.max_memory_reserved() / MiB:.1f}"
    )
    if kind == "lora" and args.infer:
        unmerged = infer_ms(model, ids)
        merged_model = model.merge_and_unload()
        merged = infer_ms(merged_model, ids)
        print(
            f"RESULT inference_ms base {base_ms:.2f} lora_unmerged {unmerged:.2f} lora_merged {merged:.2f} "
            f"merged/base {merged / base_ms:.3f}"
        )
    del model, opt, params
    torch.cuda.empty_cache()


print(f"# train_gpt2_torch: torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 off")
for k in ["lora", "full"] if args.mode == "both" else [args.mode]:
    bench(k)
