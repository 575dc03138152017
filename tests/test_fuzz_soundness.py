"""Random networks against their certified bounds.

* Relu networks (MLPs and CNNs: bias or not, batch norm, max/avg pooling, strides, padding;
  relu, or tanh / sigmoid / GELU / tanh-GELU / hardtanh, which the adjoint pass also crosses),
  random input boxes (negative, narrow, wide), pre-activations placed on the relu kink, and
  random mixed assignments: the certified bound (forward and adjoint passes) must hold at
  single points and over the box (random plus adversarial inputs), in fp32, bf16, fp16
  (PyTorch's kernels), a mixed assignment (apply_precision) and fp8 (emulated).
* Pre-norm attention blocks (LayerNorm or RMSNorm, 1-2 heads, causal mask (-1e4 or the
  dtype's finfo.min) or not, GELU / tanh-GELU / SiLU / tanh / relu / sigmoid feed-forward,
  random weight scales) on a point or a small box, some centred near 0: fp32, bf16, fp16
  (PyTorch's kernels), tf32 and fp8 (emulated).

The default suite runs a few seeded cases; ``-m heavy`` runs many more, the relu networks
under a longer adversarial search (300 steps, most of them the grid walk)."""

import copy
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from certifier.adjoint import certified_errors
from certifier.amp import apply_precision
from certifier.capture import capture
from certifier.emulate import Emulated
from certifier.formats import FORMATS
from certifier.loader import InputSpec, LoadedModel
from certifier.rounding import run_errors
from certifier.validate import cast_model, observe
from certifier.walker import analyze_bounds

F64 = torch.float64
BOXES = [(0.0, 1.0), (-1.0, 1.0), (-3.0, 0.5), (0.25, 0.5), (-50.0, 50.0)]


ACTS = [nn.ReLU, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, lambda: nn.GELU("tanh"), nn.Hardtanh]


def random_model(rng: random.Random, seed: int):
    torch.manual_seed(seed)
    act = rng.choice(ACTS)
    if rng.random() < 0.5:
        n = rng.choice([4, 9, 17, 33])
        layers, d = [nn.Flatten()], n
        for _ in range(rng.randint(1, 3)):
            w = rng.choice([3, 8, 21, 40])
            layers.append(nn.Linear(d, w, bias=rng.random() < 0.8))
            if rng.random() < 0.3:
                layers.append(nn.BatchNorm1d(w))
            layers.append(act())
            d = w
        layers.append(nn.Linear(d, rng.choice([1, 2, 5]), bias=rng.random() < 0.8))
        model, shape = nn.Sequential(*layers), (1, n)
    else:
        c, H = rng.choice([1, 2]), rng.choice([8, 10, 12])
        layers, ch, h = [], c, H
        for _ in range(rng.randint(1, 2)):
            oc, st, pad = rng.choice([2, 4, 6]), rng.choice([1, 1, 2]), rng.choice([0, 1])
            if h + 2 * pad < 3:
                break
            layers.append(nn.Conv2d(ch, oc, 3, stride=st, padding=pad, bias=rng.random() < 0.8))
            h, ch = (h + 2 * pad - 3) // st + 1, oc
            if rng.random() < 0.5:
                layers.append(nn.BatchNorm2d(oc))
            layers.append(act())
            r = rng.random()
            if r < 0.4 and h >= 3:
                k = rng.choice([2, 2, 3])
                s = 2 if k == 3 else k
                layers.append(nn.MaxPool2d(k, s))
                h = (h - k) // s + 1
            elif r < 0.6 and h >= 2:
                layers.append(nn.AvgPool2d(2))
                h //= 2
        if rng.random() < 0.3 and h >= 2:
            layers.append(nn.AdaptiveAvgPool2d(2))
            h = 2
        layers += [nn.Flatten(), nn.Linear(ch * h * h, rng.choice([1, 3]))]
        model, shape = nn.Sequential(*layers), (1, c, H, H)
    with torch.no_grad():
        sc = rng.choice([0.3, 1.0, 3.0])
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.weight.mul_(sc)
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.3, 3)
                mod.weight.uniform_(-1.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    lo, hi = rng.choice(BOXES)
    return model.eval(), shape, lo, hi


def put_on_kinks(model: nn.Module, x: torch.Tensor) -> None:
    """Shift the first Linear's bias so that every other pre-activation is ~0 at x."""
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    if not isinstance(first, nn.Linear) or first.bias is None:
        return
    with torch.no_grad():
        z = torch.nn.functional.linear(x.reshape(1, -1).to(F64), first.weight.to(F64))[0]
        idx = torch.arange(0, z.numel(), 2)
        first.bias[idx] = (-z[idx]).to(torch.float32)


def build_case(seed: int):
    """(rng, gen, model, lm, x0) of one random case: the network over its input box, with half
    of the cases' first-layer pre-activations put on the relu kinks at x0 (also used by
    benchmarks/soundness_margin.py)."""
    rng = random.Random(seed)
    model, shape, lo, hi = random_model(rng, seed)
    gen = torch.Generator().manual_seed(seed)
    x0 = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=F64)
    if rng.random() < 0.5:
        put_on_kinks(model, x0)
    lm = LoadedModel(Path("t.py"), "t", model, (torch.zeros(shape),), [InputSpec(shape, torch.float32, lo, hi)], "")
    return rng, gen, model, lm, x0


def check_case(seed: int, adv: int = 12) -> int:
    """Runs one random case; returns the number of comparisons made (asserts soundness).
    ``adv``: adversarial steps over the box for the formats PyTorch runs (above 40, most go
    to the grid walk of certifier.validate); the emulated ones always get 12."""
    rng, gen, model, lm, x0 = build_case(seed)
    spec = lm.inputs[0]
    shape, lo, hi = spec.shape, spec.lo, spec.hi
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    # Only layers that have nodes in the graph (as in a certificate): a module with none (a
    # Flatten of a 2-d input) would add a cast that nothing analysed.
    present = sorted({i.layer for i in ba.nodes.values() if i.kind == "call"})
    fmts = ["fp32", "bf16", "fp16"]
    mixed = {L: rng.choice(fmts + ["fp8_e5m2"]) for L in present}
    runnable_mixed = {L: ("fp16" if f == "fp8_e5m2" else f) for L, f in mixed.items()}
    cfgs = [{"*": f} for f in fmts] + [runnable_mixed, mixed, {"*": "fp8_e4m3"}, {"*": "fp8_e5m2"}]
    runs = [cast_model(model, f) for f in fmts] + [apply_precision(model, runnable_mixed)]
    runs += [Emulated(model, c) for c in cfgs[4:]]
    in_dt = [FORMATS[f].torch_dtype for f in fmts] + [None] * 4
    ref = copy.deepcopy(model).to(F64)
    n = 0
    for x in [x0] + [lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=F64) for _ in range(2)]:
        pt = analyze_bounds(lm, cap, boxes=[(x, x)])
        res = certified_errors(pt, cfgs, keep_nodes=False)
        fwd = run_errors(pt, cfgs, keep_nodes=False).bound
        with torch.no_grad():
            exact = ref(x)
            for cfg, mod, dt, b, bf in zip(cfgs, runs, in_dt, res.bound, fwd):
                obs = float((mod(x if dt is None else x.to(dt)).to(F64) - exact).abs().max())
                assert obs <= b <= bf, f"seed {seed} {cfg} at a point: observed {obs:.3g}, bound {b:.3g}, forward {bf:.3g}"
                n += 1
    res = certified_errors(ba, cfgs, keep_nodes=False)
    for cfg, mod, dt, b in zip(cfgs, runs, in_dt, res.bound):
        if not math.isfinite(b):
            continue
        ob = observe(lm, mod, dt, 12, adv if dt is not None else 12, seed=seed % 997)
        assert ob.max_error <= b, f"seed {seed} {cfg} over the box: observed {ob.max_error:.3g} > bound {b:.3g}"
        n += 1
    return n


class Block(nn.Module):
    """A pre-norm transformer block written with plain tensor ops."""

    def __init__(self, d: int, heads: int, act: nn.Module, causal: bool, rms: bool) -> None:
        super().__init__()
        self.d, self.h, self.causal, self.rms = d, heads, causal, rms
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.w_rms = nn.Parameter(torch.rand(d) + 0.5)
        self.ff1 = nn.Linear(d, 2 * d)
        self.act = act
        self.ff2 = nn.Linear(2 * d, d)
        self.mask_min = False  # mask with finfo(dtype).min (a marker) instead of -1e4

    def forward(self, x):
        s, dh = x.shape[1], self.d // self.h
        q, k, v = self.qkv(self.ln1(x)).split(self.d, dim=-1)
        q, k, v = (t.reshape(1, s, self.h, dh).transpose(1, 2) for t in (q, k, v))
        a = q @ k.transpose(-1, -2) / math.sqrt(dh)
        if self.causal:
            # the run's own finfo.min (the float64 reference and emulated runs take float32's)
            fill = torch.finfo(a.dtype if a.dtype != F64 else torch.float32).min if self.mask_min else -1e4
            a = a.masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), fill)
        o = (torch.softmax(a, -1) @ v).transpose(1, 2).reshape(1, s, self.d)
        x = x + self.out(o)
        if self.rms:
            h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w_rms
        else:
            h = self.ln2(x)
        return x + self.ff2(self.act(self.ff1(h)))


def check_block(seed: int) -> int:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    d, heads, s = rng.choice([4, 8, 16]), rng.choice([1, 2]), rng.choice([2, 3, 5])
    act = rng.choice([nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Tanh(), nn.ReLU(), nn.Sigmoid()])
    model = Block(d, heads, act, rng.random() < 0.5, rng.random() < 0.4).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(rng.choice([0.5, 1.0, 2.0]))
    shape = (1, s, d)
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(shape, generator=gen, dtype=F64) * rng.choice([0.5, 1.0, 3.0])
    r = rng.choice([0.0, 1e-3, 1e-2, 0.1])
    model.mask_min = rng.random() < 0.5
    if rng.random() < 0.25:  # rows near 0: RMSNorm / LayerNorm near their degenerate point
        c = c * 1e-3
    lm = LoadedModel(Path("t.py"), "t", model, (torch.zeros(shape),), [InputSpec(shape, torch.float32, -1e9, 1e9)], "")
    ba = analyze_bounds(lm, capture(lm), boxes=[(c - r, c + r)])
    fmts = ["fp32", "bf16", "fp16", "tf32", "fp8_e4m3", "fp8_e5m2"]
    res = certified_errors(ba, [{"*": f} for f in fmts], keep_nodes=False)
    ref = copy.deepcopy(model).to(F64)
    n = 0
    for f, b in zip(fmts, res.bound):
        if not math.isfinite(b):
            continue
        native = f in ("fp32", "bf16", "fp16")
        mod = cast_model(model, f) if native else Emulated(model, {"*": f})
        corners = [c + r * torch.sign(torch.randn(shape, generator=gen, dtype=F64)) for _ in range(2)]
        inner = [c + r * (2 * torch.rand(shape, generator=gen, dtype=F64) - 1) for _ in range(10)]
        with torch.no_grad():
            for x in ([c] + corners + inner if r > 0 else [c]):
                y = mod(x.to(FORMATS[f].torch_dtype) if native else x).to(F64)
                obs = float((y - ref(x)).abs().max())
                assert obs <= b, f"seed {seed} {f}: observed {obs:.3g} > bound {b:.3g}"
                n += 1
    return n


QUICK = [(check_block, s) for s in (1, 3, 5, 10)] + [(check_case, s) for s in (11, 23, 37, 41, 58, 67)]
#: (checker, first seed, blocks of 20 seeds)
MANY = [(check_block, 500, 3), (check_case, 1000, 6)]


@pytest.mark.parametrize("check,seed", QUICK, ids=[f"{c.__name__}-{s}" for c, s in QUICK])
def test_random_networks(check, seed):
    assert check(seed) > 0


@pytest.mark.heavy
@pytest.mark.parametrize("check,first", [(c, f + 20 * b) for c, f, n in MANY for b in range(n)])
def test_random_networks_many(check, first):
    kw = {"adv": 300} if check is check_case else {}
    assert sum(check(first + k, **kw) for k in range(20)) > 0
