#!/usr/bin/env python3
"""Reference data for packages/nn tests, computed with PyTorch (Debian's python3-torch 1.13, CPU).

Run from the repository root:  /usr/bin/python3 packages/nn/test/reference/make_reference.py
Writes packages/nn/test/fixtures/reference.json. Every case stores its inputs, so the tests
rebuild the same computation in lowrank and compare (they never call Python).
Tensors are stored as {"shape": [...], "data": [...flat row-major...]}; gradients are of
sum(output * upstream) with the stored upstream tensor.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "reference.json")


def T(t):
    t = t.detach()
    if t.dtype == torch.bool:
        data = [bool(v) for v in t.flatten().tolist()]
    elif t.dtype in (torch.int64, torch.int32):
        data = [int(v) for v in t.flatten().tolist()]
    else:
        data = [float(v) for v in t.float().flatten().tolist()]
    return {"shape": list(t.shape), "data": data}


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def backward_with_upstream(y):
    g = torch.randn_like(y)
    (y * g).sum().backward()
    return g


ref = {"torch": torch.__version__}

# ---------------------------------------------------------------------------------------------
# layers

layers = {}

x, w, b = leaf(2, 3, 5), leaf(4, 5), leaf(4)
y = F.linear(x, w, b)
g = backward_with_upstream(y)
layers["linear"] = dict(x=T(x), w=T(w), b=T(b), y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad), db=T(b.grad))

x, w = leaf(3, 5), leaf(4, 5)
y = F.linear(x, w)
g = backward_with_upstream(y)
layers["linear_nobias"] = dict(x=T(x), w=T(w), y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad))

# HF GPT-2 Conv1D: y = x @ W + b with W [in, out]
x, w, b = leaf(2, 3, 5), leaf(5, 4), leaf(4)
y = torch.addmm(b, x.reshape(-1, 5), w).reshape(2, 3, 4)
g = backward_with_upstream(y)
layers["conv1d"] = dict(x=T(x), w=T(w), b=T(b), y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad), db=T(b.grad))

w = leaf(10, 4)
ids = torch.tensor([[1, 3, 3], [9, 0, 1]])
y = F.embedding(ids, w)
g = backward_with_upstream(y)
layers["embedding"] = dict(w=T(w), ids=T(ids), y=T(y), g=T(g), dw=T(w.grad))

x, w, b = leaf(2, 3, 6, scale=3.0), leaf(6), leaf(6)
with torch.no_grad():
    x += 1.5
y = F.layer_norm(x, (6,), w, b, 1e-5)
g = backward_with_upstream(y)
layers["layer_norm"] = dict(x=T(x), w=T(w), b=T(b), eps=1e-5, y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad), db=T(b.grad))

x, w, b = leaf(2, 3, 4), leaf(3, 4), leaf(3, 4)
y = F.layer_norm(x, (3, 4), w, b, 1e-3)
g = backward_with_upstream(y)
layers["layer_norm_2d"] = dict(x=T(x), w=T(w), b=T(b), eps=1e-3, y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad), db=T(b.grad))

# RMSNorm is not in torch 1.13: Llama's definition, composed in torch
x, w = leaf(2, 3, 6), leaf(6)
y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
g = backward_with_upstream(y)
layers["rms_norm"] = dict(x=T(x), w=T(w), eps=1e-6, y=T(y), g=T(g), dx=T(x.grad), dw=T(w.grad))

acts = {}
base = torch.cat([torch.linspace(-6, 6, 25), torch.tensor([-0.0, 1e-4, -1e-4, 20.0, -20.0])])
for name, fn in [
    ("relu", F.relu),
    ("gelu", lambda t: F.gelu(t)),
    ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh")),
    ("silu", F.silu),
    ("tanh", torch.tanh),
    ("sigmoid", torch.sigmoid),
]:
    x = base.clone().requires_grad_(True)
    y = fn(x)
    y.sum().backward()
    acts[name] = dict(y=T(y), dx=T(x.grad))
layers["activations"] = dict(x=T(base), **acts)

# nanoGPT-style causal self-attention: c_attn [3C, C], c_proj [C, C]
B, Tn, C, nh = 2, 5, 8, 2
x = leaf(B, Tn, C)
wa, ba, wp, bp = leaf(3 * C, C, scale=0.3), leaf(3 * C, scale=0.1), leaf(C, C, scale=0.3), leaf(C, scale=0.1)
q, k, v = F.linear(x, wa, ba).split(C, dim=2)
q, k, v = [t.view(B, Tn, nh, C // nh).transpose(1, 2) for t in (q, k, v)]
att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // nh))
mask = torch.tril(torch.ones(Tn, Tn, dtype=torch.bool))
att = att.masked_fill(~mask, float("-inf")).softmax(-1)
yh = (att @ v).transpose(1, 2).contiguous().view(B, Tn, C)
y = F.linear(yh, wp, bp)
g = backward_with_upstream(y)
layers["causal_self_attention"] = dict(
    n_embd=C, n_head=nh, x=T(x), c_attn_w=T(wa), c_attn_b=T(ba), c_proj_w=T(wp), c_proj_b=T(bp),
    y=T(y), g=T(g), dx=T(x.grad), d_c_attn_w=T(wa.grad), d_c_proj_w=T(wp.grad), d_c_attn_b=T(ba.grad),
)

# the same with an extra padding mask [B, 1, 1, T] (true = may attend): key 4 of batch 1 hidden
x2 = x.detach().clone()
pad = torch.ones(B, 1, 1, Tn, dtype=torch.bool)
pad[1, 0, 0, 3] = False
q, k, v = F.linear(x2, wa, ba).split(C, dim=2)
q, k, v = [t.view(B, Tn, nh, C // nh).transpose(1, 2) for t in (q, k, v)]
att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // nh))
att = att.masked_fill(~(mask & pad), float("-inf")).softmax(-1)
y = F.linear((att @ v).transpose(1, 2).contiguous().view(B, Tn, C), wp, bp)
layers["causal_self_attention_padded"] = dict(pad=T(pad), y=T(y))

# scaled dot-product attention with a float mask
q, k, v = leaf(2, 2, 4, 3), leaf(2, 2, 5, 3), leaf(2, 2, 5, 3)
fmask = torch.randn(4, 5)
att = ((q @ k.transpose(-2, -1)) / math.sqrt(3) + fmask).softmax(-1)
y = att @ v
g = backward_with_upstream(y)
layers["sdpa_float_mask"] = dict(q=T(q), k=T(k), v=T(v), mask=T(fmask), y=T(y), g=T(g), dq=T(q.grad), dk=T(k.grad), dv=T(v.grad))

# torch.nn.MultiheadAttention (batch_first=False) with a bool attn_mask and key padding
E, H, L, S, N = 8, 2, 4, 5, 2
mha = torch.nn.MultiheadAttention(E, H)
query, key = leaf(L, N, E), leaf(S, N, E)
value = torch.randn(S, N, E)
attn_mask = torch.zeros(L, S, dtype=torch.bool)
attn_mask[0, 4] = True
attn_mask[2, 1] = True
kpm = torch.zeros(N, S, dtype=torch.bool)
kpm[1, 0] = True
out, weights = mha(query, key, value, attn_mask=attn_mask, key_padding_mask=kpm, need_weights=True)
g = backward_with_upstream(out)
layers["multihead_attention"] = dict(
    embed_dim=E, num_heads=H,
    state={k_: T(v_) for k_, v_ in mha.state_dict().items()},
    query=T(query), key=T(key), value=T(value), attn_mask=T(attn_mask), key_padding_mask=T(kpm),
    out=T(out), weights=T(weights), g=T(g), dquery=T(query.grad), dkey=T(key.grad),
)

# GPT-2 MLP: c_fc → gelu(tanh) → c_proj
x = leaf(2, 3, 4)
w1, b1, w2, b2 = leaf(16, 4, scale=0.5), leaf(16), leaf(4, 16, scale=0.5), leaf(4)
y = F.linear(F.gelu(F.linear(x, w1, b1), approximate="tanh"), w2, b2)
g = backward_with_upstream(y)
layers["mlp"] = dict(x=T(x), c_fc_w=T(w1), c_fc_b=T(b1), c_proj_w=T(w2), c_proj_b=T(b2), y=T(y), g=T(g), dx=T(x.grad), d_c_fc_w=T(w1.grad))

ref["layers"] = layers

# ---------------------------------------------------------------------------------------------
# losses

losses = {}
logits = torch.randn(6, 5) * 2
targets = torch.tensor([1, 0, -100, 4, 2, -100])
cases = []
for ls in (0.0, 0.1):
    for red in ("mean", "sum", "none"):
        x = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(x, targets, reduction=red, label_smoothing=ls)
        loss.sum().backward()
        cases.append(dict(label_smoothing=ls, reduction=red, loss=T(loss), dlogits=T(x.grad)))
losses["cross_entropy"] = dict(logits=T(logits), targets=T(targets), ignore_index=-100, cases=cases)

x = (torch.randn(6, 5)).requires_grad_(True)
t = torch.tensor([1, 1, 0, 4, 2, 1])
loss = F.cross_entropy(x, t, ignore_index=1, label_smoothing=0.05)
loss.backward()
losses["cross_entropy_custom_ignore"] = dict(logits=T(x), targets=T(t), ignore_index=1, label_smoothing=0.05, loss=T(loss), dlogits=T(x.grad))

x = torch.randn(2, 5, 3).requires_grad_(True)
t = torch.tensor([[0, 4, -100], [2, 2, 1]])
loss = F.cross_entropy(x, t, label_smoothing=0.2)
loss.backward()
losses["cross_entropy_kdim"] = dict(logits=T(x), targets=T(t), label_smoothing=0.2, loss=T(loss), dlogits=T(x.grad))

x = torch.randn(4, 5).requires_grad_(True)
p = torch.randn(4, 5).softmax(-1)
loss = F.cross_entropy(x, p, label_smoothing=0.1)
loss.backward()
losses["cross_entropy_probs"] = dict(logits=T(x), targets=T(p), label_smoothing=0.1, loss=T(loss), dlogits=T(x.grad))

x = torch.randn(5).requires_grad_(True)
t = torch.tensor(3)
loss = F.cross_entropy(x, t)
loss.backward()
losses["cross_entropy_unbatched"] = dict(logits=T(x), targets=T(t), loss=T(loss), dlogits=T(x.grad))

a, b = torch.randn(3, 4), torch.randn(3, 4)
cases = []
for red in ("mean", "sum", "none"):
    x = a.clone().requires_grad_(True)
    loss = F.mse_loss(x, b, reduction=red)
    loss.sum().backward()
    cases.append(dict(reduction=red, loss=T(loss), dinput=T(x.grad)))
losses["mse"] = dict(input=T(a), target=T(b), cases=cases)

a = torch.randn(3, 4) * 4
a[0, 0], a[0, 1], a[1, 2] = 30.0, -30.0, 0.0
yb = torch.rand(3, 4)
yb[2] = (yb[2] > 0.5).float()
pw = torch.tensor([0.5, 1.0, 2.0, 3.0])
wt = torch.rand(3, 4)
cases = []
for red, use_pw, use_w in [("mean", False, False), ("sum", False, False), ("none", False, False), ("mean", True, False), ("none", True, True)]:
    x = a.clone().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(x, yb, reduction=red, pos_weight=pw if use_pw else None, weight=wt if use_w else None)
    loss.sum().backward()
    cases.append(dict(reduction=red, pos_weight=use_pw, weight=use_w, loss=T(loss), dinput=T(x.grad)))
losses["bce_with_logits"] = dict(input=T(a), target=T(yb), pos_weight=T(pw), weight=T(wt), cases=cases)

ref["losses"] = losses

# ---------------------------------------------------------------------------------------------
# optimizers: fixed gradient sequences (independent of the parameters), parameters after each step

STEPS = 6
w0, b0 = torch.randn(3, 4), torch.randn(4)
grads = [(torch.randn(3, 4), torch.randn(4)) for _ in range(STEPS)]


def run(make, sched=None):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = make(w, b)
    s = sched(opt) if sched else None
    traj, lrs = [], []
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        if s:
            s.step()
        lrs.append([grp["lr"] for grp in opt.param_groups])
        traj.append(dict(w=T(w), b=T(b)))
    return traj, lrs


opt_cases = []


def add(name, kind, options, make, groups=None, sched=None):
    traj, lrs = run(make, sched)
    opt_cases.append(dict(name=name, kind=kind, options=options, groups=groups, schedule=sched and sched.__name__, steps=traj, lrs=lrs))


add("sgd", "SGD", dict(lr=0.1), lambda w, b: torch.optim.SGD([w, b], lr=0.1))
add("sgd_momentum", "SGD", dict(lr=0.1, momentum=0.9), lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9))
add("sgd_dampening_wd", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weightDecay=0.01),
    lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01))
add("sgd_nesterov_wd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weightDecay=0.1),
    lambda w, b: torch.optim.SGD([w, b], lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1))
add("adam", "Adam", dict(lr=0.01), lambda w, b: torch.optim.Adam([w, b], lr=0.01))
add("adam_wd_amsgrad", "Adam", dict(lr=0.01, betas=[0.8, 0.95], eps=1e-6, weightDecay=0.1, amsgrad=True),
    lambda w, b: torch.optim.Adam([w, b], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, amsgrad=True))
add("adamw", "AdamW", dict(lr=0.01), lambda w, b: torch.optim.AdamW([w, b], lr=0.01))
add("adamw_amsgrad", "AdamW", dict(lr=0.01, weightDecay=0.5, amsgrad=True),
    lambda w, b: torch.optim.AdamW([w, b], lr=0.01, weight_decay=0.5, amsgrad=True))
add("adamw_groups", "AdamW", dict(lr=0.01),
    lambda w, b: torch.optim.AdamW([dict(params=[w], weight_decay=0.1, lr=0.02), dict(params=[b], weight_decay=0.0)], lr=0.01),
    groups=[dict(weightDecay=0.1, lr=0.02), dict(weightDecay=0.0)])


def warmup_cosine(opt):
    def f(step, w=2, total=6):
        if step < w:
            return step / max(1, w)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


add("adamw_cosine", "AdamW", dict(lr=0.01, weightDecay=0.1),
    lambda w, b: torch.optim.AdamW([w, b], lr=0.01, weight_decay=0.1), sched=warmup_cosine)

ref["optim"] = dict(w0=T(w0), b0=T(b0), grads=[dict(w=T(gw), b=T(gb)) for gw, gb in grads], cases=opt_cases)

# clip_grad_norm_
gw, gb = torch.randn(3, 4) * 2, torch.randn(4)
clip = []
for max_norm, norm_type in [(1.0, 2.0), (100.0, 2.0), (0.5, float("inf")), (1.0, 3.0)]:
    w = torch.zeros(3, 4, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    w.grad, b.grad = gw.clone(), gb.clone()
    total = torch.nn.utils.clip_grad_norm_([w, b], max_norm, norm_type=norm_type)
    clip.append(dict(max_norm=max_norm, norm_type="inf" if math.isinf(norm_type) else norm_type, total=float(total), gw=T(w.grad), gb=T(b.grad)))
ref["clip_grad_norm"] = dict(gw=T(gw), gb=T(gb), cases=clip)


# schedules through torch's LambdaLR (Hugging Face's formulas, with a floor ratio)
def lrs_of(fn, n=12, lr=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    s = torch.optim.lr_scheduler.LambdaLR(opt, fn)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        s.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def linear_fn(w, total, mn=0.0):
    return lambda s: s / max(1, w) if s < w else mn + (1 - mn) * max(0.0, (total - s) / max(1, total - w))


def cosine_fn(w, total, mn=0.0):
    return lambda s: s / max(1, w) if s < w else mn + (1 - mn) * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - w) / max(1, total - w))))


def constant_fn(w):
    return lambda s: s / max(1, w) if s < w else 1.0


ref["schedules"] = [
    dict(kind="linear", warmupSteps=3, totalSteps=10, minLrRatio=0.0, lrs=lrs_of(linear_fn(3, 10))),
    dict(kind="linear", warmupSteps=0, totalSteps=8, minLrRatio=0.1, lrs=lrs_of(linear_fn(0, 8, 0.1))),
    dict(kind="cosine", warmupSteps=3, totalSteps=10, minLrRatio=0.0, lrs=lrs_of(cosine_fn(3, 10))),
    dict(kind="cosine", warmupSteps=2, totalSteps=9, minLrRatio=0.2, lrs=lrs_of(cosine_fn(2, 9, 0.2))),
    dict(kind="constant", warmupSteps=2, lrs=lrs_of(constant_fn(2))),
]

# Linear's default init bound, for the init test
ref["init"] = dict(linear_bound_in_7=1 / math.sqrt(7))

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(ref, f, separators=(",", ":"))
print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")
