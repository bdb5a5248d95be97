#!/usr/bin/env python3
"""Generates reference.json: inputs, losses and gradients of composite functions in PyTorch.

Run with Debian's python3-torch (1.13, CPU):  /usr/bin/python3 make_reference.py
Inputs are float32 values (what the TypeScript tests load); PyTorch computes in float64 on those
exact values, so the reference is more precise than the float32 engine under test.
The tests only read the JSON: Python is never needed at test time.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)


def f32(*shape, scale=1.0):
    """Random float32 values, returned as a float64 tensor holding exactly those values."""
    return (torch.randn(*shape, dtype=torch.float32) * scale).double().requires_grad_(True)


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def enc_int(t):
    return {"shape": list(t.shape), "data": [int(v) for v in t.reshape(-1).tolist()], "dtype": "int32"}


def case(inputs, ints, loss, outputs):
    loss.backward()
    return {
        "inputs": {**{k: enc(v) for k, v in inputs.items()}, **{k: enc_int(v) for k, v in ints.items()}},
        "loss": float(loss),
        "outputs": {k: enc(v) for k, v in outputs.items()},
        "grads": {k: enc(v.grad) for k, v in inputs.items()},
    }


def mlp_cross_entropy():
    # x (N, D) → gelu(x W1 + b1) (N, H) → logits (N, C) → mean cross-entropy
    x, w1, b1, w2, b2 = f32(5, 6), f32(6, 8, scale=0.5), f32(8, scale=0.1), f32(8, 4, scale=0.5), f32(4, scale=0.1)
    labels = torch.randint(0, 4, (5,))
    h = F.gelu(x @ w1 + b1)
    logits = h @ w2 + b2
    loss = F.cross_entropy(logits, labels)
    return case({"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2}, {"labels": labels}, loss, {"logits": logits})


def attention_block():
    # causal multi-head self-attention: x (B, T, C), 2 heads, then a tanh-GELU MLP
    B, T, C, nh = 2, 5, 8, 2
    hs = C // nh
    x, w_attn, w_proj, w_fc = f32(B, T, C), f32(C, 3 * C, scale=0.3), f32(C, C, scale=0.3), f32(C, C, scale=0.3)
    r = f32(B, T, C)
    q, k, v = (x @ w_attn).split(C, dim=2)
    q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, nh, hs).transpose(1, 2)
    v = v.view(B, T, nh, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, C) @ w_proj
    y = y + F.gelu(y @ w_fc, approximate="tanh")
    loss = (y * r.detach()).sum()
    r.requires_grad_(False)
    out = case({"x": x, "w_attn": w_attn, "w_proj": w_proj, "w_fc": w_fc}, {}, loss, {"y": y})
    out["inputs"]["r"] = enc(r)
    return out


def layer_norm():
    # layer norm from primitives (checked here against F.layer_norm), then a weighted sum
    x, gamma, beta, r = f32(3, 7, scale=2.0), f32(7), f32(7), f32(3, 7)
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) * torch.rsqrt(var + 1e-5) * gamma + beta
    assert torch.allclose(y, F.layer_norm(x, (7,), gamma, beta, 1e-5))
    loss = (y * r.detach()).sum()
    r.requires_grad_(False)
    out = case({"x": x, "gamma": gamma, "beta": beta}, {}, loss, {"y": y})
    out["inputs"]["r"] = enc(r)
    return out


if __name__ == "__main__":
    ref = {
        "generator": f"make_reference.py with torch {torch.__version__} (float64 on float32 inputs)",
        "cases": {
            "mlp_cross_entropy": mlp_cross_entropy(),
            "attention_block": attention_block(),
            "layer_norm": layer_norm(),
        },
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.json")
    with open(path, "w") as fh:
        json.dump(ref, fh, indent=1)
    print("wrote", path)
