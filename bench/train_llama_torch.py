"""PyTorch + PEFT reference for bench/train-llama.ts (issues 17 and 18): the same Llama LoRA step on the same GPU.

A SmolLM2-135M-shaped model (its published config: hidden 576, 30 layers, 9 heads, 3 kv heads,
intermediate 1536, vocab 49152, tied embeddings, rope_theta 100000; random init), batch 8 x 512,
LoRA r=8 alpha=16 on q_proj and v_proj through peft, AdamW (lr 1e-4, wd 0.01); f32 with TF32 off
(--dtype bf16: the frozen base in bfloat16, the adapters in float32 as peft keeps them). Prints
tokens/s and peak memory in train-llama.ts's RESULT format, and greedy decode tokens/s with the
KV cache at batch 1 (`generate`, --prompt tokens then --decode new ones).

    python3 bench/train_llama_torch.py [--dtype f32|bf16 --layers 30 --steps 10 --decode 128 --prompt 32]
"""

import argparse
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--dtype", default="f32")
p.add_argument("--layers", type=int, default=30)
p.add_argument("--hidden", type=int, default=576)
p.add_argument("--heads", type=int, default=9)
p.add_argument("--kv", type=int, default=3)
p.add_argument("--inter", type=int, default=1536)
p.add_argument("--vocab", type=int, default=49152)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--decode", type=int, default=128, help="new tokens for the decode measurement (0: none)")
p.add_argument("--prompt", type=int, default=32)
p.add_argument("--attn", default=None, help="attn_implementation (default: transformers' choice)")
args = p.parse_args()

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")
B, T = args.batch, args.seq
MiB = 1024 * 1024
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]


def new_model():
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama", vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.inter,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv,
        tie_word_embeddings=True, rope_theta=100000.0, max_position_embeddings=8192, rms_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=0,
    )
    kw = {"attn_implementation": args.attn} if args.attn else {}
    return AutoModelForCausalLM.from_config(cfg, **kw).to(dev, dtype=dtype)


def sync():
    torch.cuda.synchronize()


@torch.no_grad()
def decode(model):
    """Greedy generate at batch 1: time of 1 new token (prefill) and of N; decode rate (N-1)/(t_N - t_1)."""
    model.eval()
    g = torch.Generator(device=dev).manual_seed(2)
    prompt = torch.randint(0, args.vocab, (1, args.prompt), device=dev, generator=g)

    def gen(n):
        sync()
        t0 = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                             pad_token_id=0, eos_token_id=None)
        sync()
        assert out.shape[1] == args.prompt + n, out.shape
        return time.perf_counter() - t0

    gen(4)  # warm-up
    t1 = min(gen(1) for _ in range(3))
    tn = min(gen(args.decode) for _ in range(2))
    print(f"RESULT decode prefill_ms {t1 * 1e3:.2f} total_ms {tn * 1e3:.1f} new_tokens {args.decode}")
    print(f"RESULT decode tokens_per_s {(args.decode - 1) / (tn - t1):.1f} end_to_end_tokens_per_s {args.decode / tn:.1f}")
    model.train()


def bench():
    model = new_model()
    n_base = sum(q.numel() for q in model.parameters())
    if args.decode > 0:
        decode(model)
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    n_params = sum(q.numel() for q in params)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    g = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(0, args.vocab, (B, T), device=dev, generator=g)
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
    kind = f"lora-{args.dtype}"
    print(f"\n## {kind} (torch {torch.__version__}, {torch.cuda.get_device_name()}), {n_base} base parameters, {n_params} trained")
    print(f"attn_implementation {model.base_model.model.config._attn_implementation}")
    print(f"RESULT {kind} tokens_per_s {B * T / (wall / 1e3):.0f}")
    print(f"RESULT {kind} step_ms {wall:.2f}")
    print(f"loss: first {first:.4f}, last {last:.4f}")
    print(f"RESULT {kind} fwd_ms {fwd:.2f} bwd_ms {bwd:.2f} opt_ms {o:.2f}")
    print(
        f"RESULT {kind} peak_in_use_MiB {torch.cuda.max_memory_allocated() / MiB:.1f} "
        f"peak_reserved_MiB {torch.cuda.max_memory_reserved() / MiB:.1f}"
    )


print(f"# train_llama_torch: torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 off, base {args.dtype}")
print(
    f"config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads / {args.kv} kv, intermediate {args.inter}, "
    f"vocab {args.vocab} (tied); batch {B} x {T}; LoRA r=8 alpha=16 on q_proj,v_proj; AdamW lr 1e-4 wd 0.01; "
    f"{args.steps} timed steps after {args.warmup} warm-up"
)
bench()
