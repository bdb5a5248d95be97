"""Reference data for lowrank's weight quantization (issue #18), from the QLoRA paper's definitions.

Plain python3 (no numpy). Writes quant-reference.json next to this file:

    python3 packages/tensor/test/reference/make_quant_reference.py

NF4 (Dettmers et al., QLoRA, 2023, section 3 and appendix E): a 4-bit data type whose 16 values
are quantiles of N(0, 1), normalised into [-1, 1], made asymmetric so that zero is exact:
2^(k-1) = 8 quantiles for the negative side and 2^(k-1) + 1 = 9 for the positive side, the two
zeros merged. The quantiles are taken at probabilities evenly spaced from 1/2 to delta, where
delta sits halfway between the two outermost probabilities 1 - 1/(2*15) and 1 - 1/(2*16) (so the
extreme values stay finite); both sides are divided by Q(delta) so the outermost values are -1
and 1. The result is checked against the table printed in the paper's appendix (within 5e-7: the
table's values went through float32 arithmetic); the table's values are the ones used.

Block-wise absmax quantization: a [rows, cols] matrix is cut into blocks of `block` consecutive
values along each row (the last block of a row may be short); each block keeps its absmax c, and
each value x becomes the index of the NF4 value nearest to x / c (ties: the lower index), or for
int8 round-half-away-from-zero(127 * x / c) clamped to [-127, 127] with the scale c / 127.
An all-zero block has c = 0 and dequantizes to zeros.

Double quantization (QLoRA section 3): the block scales c (positive) are centred by their mean
mu, then quantized again in blocks of 256 with 8 bits: step_g = absmax_g(c - mu) / 127,
code = round-half-away(127 * (c - mu) / absmax_g), c' = code * step_g + mu. (The paper uses an
8-bit float for this second level; lowrank uses 8-bit integers, which the same definitions give.)

Packing: row r of the codes takes ceil(cols / per_word) u32 words (per_word = 8 nibbles for nf4,
4 bytes for int8); value c of the row sits in word c // per_word at bit 4*(c % per_word) (nf4)
or 8*(c % per_word) (int8, two's complement). The int8 scale codes of double quantization are
packed 4 per word the same way, as one flat row.
"""

import json
import math
import os
import struct
from statistics import NormalDist

# The table of NF4 values in the QLoRA paper (appendix E).
PAPER_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def linspace(a, b, n):
    return [a + (b - a) * i / (n - 1) for i in range(n)]


def nf4_from_definition():
    q = NormalDist().inv_cdf
    delta = 0.5 * ((1 - 1 / (2 * 15)) + (1 - 1 / (2 * 16)))
    pos = [q(p) for p in linspace(delta, 0.5, 9)[:-1]]  # 8 positive quantiles (0.5 -> 0 dropped)
    neg = [-q(p) for p in linspace(delta, 0.5, 8)[:-1]]  # 7 negative quantiles
    top = q(delta)
    values = sorted([v / top for v in pos] + [v / top for v in neg] + [0.0])
    return values


def round_away(x):
    return math.copysign(math.floor(abs(x) + 0.5), x)


class Rng:
    """xorshift32 in plain integers, for reproducible float32 weights."""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s / 4294967296.0

    def normal(self):
        u1 = max(self.next(), 1e-12)
        u2 = self.next()
        return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


def quantize(w, rows, cols, fmt, block, double_quant, code):
    blocks_per_row = math.ceil(cols / block)
    codes = []
    scales = []  # what is stored: absmax (nf4) or absmax/127 (int8), as float32
    for r in range(rows):
        row = w[r * cols:(r + 1) * cols]
        for b in range(blocks_per_row):
            part = row[b * block:(b + 1) * block]
            c = max(abs(x) for x in part)
            if fmt == 'nf4':
                scales.append(f32(c))
                for x in part:
                    v = 0.0 if c == 0 else x / c
                    best = min(range(16), key=lambda i: (abs(v - code[i]), i))
                    codes.append(best)
            else:
                scales.append(f32(c / 127))
                for x in part:
                    codes.append(0 if c == 0 else int(max(-127, min(127, round_away(127 * x / c)))))
    out = {'codes': codes, 'scales': scales}
    used = scales
    if double_quant:
        mu = f32(sum(scales) / len(scales))
        steps, scodes = [], []
        for g in range(math.ceil(len(scales) / 256)):
            part = [s - mu for s in scales[g * 256:(g + 1) * 256]]
            a = max(abs(x) for x in part)
            steps.append(f32(a / 127))
            scodes += [0 if a == 0 else int(max(-127, min(127, round_away(127 * x / a)))) for x in part]
        used = [f32(f32(scodes[i] * steps[i // 256]) + mu) for i in range(len(scales))]
        out.update({'scaleMean': mu, 'scaleSteps': steps, 'scaleCodes': scodes, 'dequantScales': used})
    deq = []
    for r in range(rows):
        for c in range(cols):
            k = codes[r * cols + c]
            s = used[r * blocks_per_row + c // block]
            deq.append(f32((code[k] if fmt == 'nf4' else k) * s))
    out['dequant'] = deq
    out['words'] = pack(codes, rows, cols, 4 if fmt == 'nf4' else 8)
    if double_quant:
        out['scaleWords'] = pack(out['scaleCodes'], 1, len(scales), 8)
    return out


def pack(codes, rows, cols, bits):
    per = 32 // bits
    wpr = math.ceil(cols / per)
    words = []
    for r in range(rows):
        for j in range(wpr):
            word = 0
            for t in range(per):
                c = j * per + t
                if c < cols:
                    word |= (codes[r * cols + c] & ((1 << bits) - 1)) << (bits * t)
            words.append(word)
    return words


def main():
    values = nf4_from_definition()
    worst = max(abs(a - b) for a, b in zip(values, PAPER_NF4))
    assert worst < 5e-7, f'NF4 from the definition differs from the paper by {worst}'
    code = [f32(v) for v in PAPER_NF4]
    rng = Rng(18)
    cases = []
    for name, rows, cols, fmt, block, dq in [
        ('nf4 64 aligned', 3, 128, 'nf4', 64, False),
        ('nf4 64 ragged', 5, 70, 'nf4', 64, False),
        ('nf4 32 ragged', 4, 45, 'nf4', 32, False),
        ('nf4 double quant', 3, 1400, 'nf4', 16, True),
        ('int8 blocks of 64', 3, 150, 'int8', 64, False),
        ('int8 per channel', 6, 37, 'int8', 37, False),
    ]:
        w = [f32(rng.normal() * 0.05) for _ in range(rows * cols)]
        # an all-zero block, an exact code value and a tie between two codes
        for i in range(min(block, cols)):
            w[cols + i] = 0.0
        w[0] = f32(0.25)
        w[1] = f32(-1.0)
        if fmt == 'nf4' and rows > 2:
            # block 0 of row 2: absmax 1, one value exactly halfway between codes 8 and 9
            base = 2 * cols
            w[base] = 1.0
            w[base + 1] = f32((code[8] + code[9]) / 2)
        case = {'name': name, 'format': fmt, 'rows': rows, 'cols': cols, 'blockSize': block,
                'doubleQuant': dq, 'weights': w}
        case.update(quantize(w, rows, cols, fmt, block, dq, code))
        cases.append(case)
    out = {'nf4FromDefinition': values, 'nf4Paper': PAPER_NF4, 'cases': cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'quant-reference.json')
    with open(path, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
    print(f'wrote {path}: {len(cases)} cases, NF4 within {worst:.2e} of the paper')


if __name__ == '__main__':
    main()
