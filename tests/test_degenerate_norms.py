"""End to end, against real bf16 / fp16 / fp32 runs: normalisations whose input can be (nearly)
constant or (nearly) 0 somewhere in the domain, and attention masks holding finfo.min.

* LayerNorm: the variance's lower bound over the domain is 0 (token embeddings, boxes that
  contain constant rows). Its error is (e_i + mean e + Z rms e) / s_min plus the kernel's
  rounding with s_min >= sqrt(eps): finite, where it used to be declared unbounded.
* RMSNorm (curvature_rules.rmsnorm): the mean square can be 0; the chain is bounded as a unit.
* Masks: ``torch.finfo(float32).min`` added to, or selected into, attention scores before a
  softmax becomes a marker (certifier.walker._mask_markers); a mask with another use stays a
  number (and the bound stays unbounded: fail closed).

Observed errors come from random domain inputs, inputs placed on the degenerate points
(constant rows, rows near 0, the vocabulary's degenerate rows) and the adversarial search
of certifier.validate."""

from __future__ import annotations

import math

import pytest
import torch

from certifier.adjoint import certified_errors
from certifier.formats import FORMATS
from certifier.validate import ErrorProbe, cast_model, observe
from certifier.walker import analyze_bounds
from tests.rules.harness import box, build, ids

F64 = torch.float64
FMTS = ["fp32", "bf16", "fp16"]


class HfRms(torch.nn.Module):
    def __init__(self, n: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        h = x.to(torch.float32)  # as Hugging Face's LlamaRMSNorm (no-op in the fp32 export)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _vocab(n: int, d: int, seed: int) -> torch.nn.Embedding:
    """Random rows, plus degenerate ones: all zero, constant, constant + 1e-4 noise, tiny."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.Embedding(n, d)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(n, d, generator=g) * 0.5)
        emb.weight[0] = 0.0
        emb.weight[1] = 0.7
        emb.weight[2] = -0.3 + 1e-4 * torch.randn(d, generator=g)
        emb.weight[3] = 1e-4 * torch.randn(d, generator=g)
    return emb


class TokenNorm(torch.nn.Module):
    def __init__(self, kind: str, n: int = 12, d: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.emb = _vocab(n, d, seed)
        self.norm = torch.nn.LayerNorm(d, eps=1e-5) if kind == "ln" else HfRms(d)
        self.head = torch.nn.Linear(d, 3)
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in self.head.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, t):
        return self.head(self.norm(self.emb(t)))


class BoxNorm(torch.nn.Module):
    def __init__(self, kind: str, d: int = 8) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(d, eps=1e-5) if kind == "ln" else HfRms(d, eps=1e-5)
        self.head = torch.nn.Linear(d, 2)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in self.head.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.head(self.norm(x))


def _bound(module, boxes, fmts):
    _, cap, loaded = build(module, boxes, None, True)
    ba = analyze_bounds(loaded, cap)
    res = certified_errors(ba, [{"*": f} for f in fmts], keep_nodes=False)
    return loaded, dict(zip(fmts, res.bound))


def _worst(loaded, module, fmt, inputs, adv=200):
    probe = ErrorProbe(loaded, cast_model(module, fmt), FORMATS[fmt].torch_dtype)
    worst = max((probe.error(xs)[0] for xs in inputs), default=0.0)
    ob = observe(loaded, cast_model(module, fmt), FORMATS[fmt].torch_dtype, 40, adv, seed=3)
    return max(worst, ob.max_error)


@pytest.mark.parametrize("kind", ["ln", "rms"])
def test_token_norms_are_bounded_and_sound(kind):
    """Embedding rows with variance (mean square) 0 and near 0 are in the domain."""
    m = TokenNorm(kind).eval()
    loaded, bounds = _bound(m, [ids((2, 5), 0, 11)], FMTS)
    assert all(math.isfinite(b) for b in bounds.values()), bounds
    seqs = [torch.tensor([[0, 1, 2, 3, 4], [3, 2, 1, 0, 11]]), torch.tensor([[2, 2, 2, 3, 3], [1, 1, 0, 0, 3]])]
    for fmt in FMTS:
        obs = _worst(loaded, m, fmt, [(s,) for s in seqs])
        assert 0 <= obs <= bounds[fmt], (fmt, obs, bounds[fmt])


@pytest.mark.parametrize("kind", ["ln", "rms"])
def test_box_norms_near_constant_rows_are_sound(kind):
    """x in [-1, 1]^(2, 8): rows c + delta * noise with delta from 0 to 1e-2, and rows near
    0 (RMSNorm's c-dominated regime)."""
    m = BoxNorm(kind).eval()
    loaded, bounds = _bound(m, [box((2, 8), -1.0, 1.0)], FMTS)
    assert all(math.isfinite(b) for b in bounds.values()), bounds
    g = torch.Generator().manual_seed(11)
    inputs = []
    for delta in (0.0, 1e-7, 1e-5, 1e-3, 1e-2):
        for c in (-0.9, -0.1, 0.0, 0.37, 1.0 - 1e-2):
            x = (c + delta * torch.randn(2, 8, generator=g, dtype=F64)).clamp(-1, 1)
            inputs.append((x,))
    for fmt in FMTS:
        obs = _worst(loaded, m, fmt, inputs)
        assert 0 < obs <= bounds[fmt], (fmt, obs, bounds[fmt])


class MaskedAttention(torch.nn.Module):
    """One head of causal attention over x in a box, the mask holding finfo(float32).min:
    ``where`` (GPT-2's form), ``add`` (Llama's additive mask), ``masked_fill`` with a Python
    scalar, or ``mul`` (a mask scaled on its way: not a marker, fail closed)."""

    def __init__(self, form: str, t: int = 5, d: int = 6) -> None:
        super().__init__()
        self.form = form
        g = torch.Generator().manual_seed(5)
        self.q = torch.nn.Parameter(torch.randn(d, d, generator=g) * 0.4)
        self.k = torch.nn.Parameter(torch.randn(d, d, generator=g) * 0.4)
        self.v = torch.nn.Parameter(torch.randn(d, d, generator=g) * 0.4)
        keep = torch.tril(torch.ones(t, t, dtype=torch.bool))
        self.register_buffer("keep", keep)
        self.register_buffer("add_mask", torch.where(keep, 0.0, torch.finfo(torch.float32).min))

    def forward(self, x):
        s = (x @ self.q) @ (x @ self.k).transpose(-1, -2) / math.sqrt(x.shape[-1])
        if self.form == "where":
            s = torch.where(self.keep, s, torch.full((), torch.finfo(torch.float32).min))
        elif self.form == "masked_fill":
            s = s.masked_fill(~self.keep, torch.finfo(s.dtype).min)  # the run's own dtype
        elif self.form == "add":
            s = s + self.add_mask
        else:
            s = s + self.add_mask * 0.5
        return torch.softmax(s, -1) @ (x @ self.v)


@pytest.mark.parametrize("form", ["where", "add", "masked_fill"])
def test_finfo_min_masks_are_markers(form):
    m = MaskedAttention(form).eval()
    loaded, bounds = _bound(m, [box((5, 6), -1.0, 1.0)], FMTS)
    assert all(math.isfinite(b) for b in bounds.values()), bounds
    for fmt in FMTS:
        obs = _worst(loaded, m, fmt, [], adv=300)
        assert 0 < obs <= bounds[fmt], (fmt, obs, bounds[fmt])


def test_a_mask_used_otherwise_stays_a_number():
    """mask * 0.5 is not a marker (scaling is not on the allowed path): the scores' rounding
    at -1.7e38 is charged as it is (u 1.7e38 in fp32; the cast overflows in bf16), where the
    marker forms give finite, moderate bounds."""
    m = MaskedAttention("mul").eval()
    _, bounds = _bound(m, [box((5, 6), -1.0, 1.0)], ["fp32", "bf16"])
    assert bounds["fp32"] > 1e20 and bounds["bf16"] == math.inf, bounds
    _, marked = _bound(MaskedAttention("add").eval(), [box((5, 6), -1.0, 1.0)], ["fp32", "bf16"])
    assert marked["fp32"] < 1e-2 and marked["bf16"] < 100, marked


@pytest.mark.parametrize("form", ["where", "add", "masked_fill"])
def test_mask_marker_ranges_hold_for_real_values(form):
    """The real fp64 activations (the mask at -3.4e38, the masked scores next to it) lie in
    the intervals, markers read as 'beyond 2^64' (certifier.interval.as_markers); and the
    marked elements are exactly the masked ones."""
    from certifier.interval import as_markers
    from certifier.trace import node_values

    m = MaskedAttention(form).eval()
    _, cap, loaded = build(m, [box((5, 6), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    marked = [n for n, i in ba.nodes.items() if i.primary is not None and i.primary.is_float and bool(torch.isneginf(i.primary.hi).any())]
    assert marked, "no marker"
    gen = torch.Generator().manual_seed(2)
    seen = 0

    def visit(node, v):
        nonlocal seen
        iv = ba.nodes[node].primary if node in ba.nodes else None
        if iv is None or not isinstance(v, torch.Tensor) or not v.dtype.is_floating_point or iv.numel() == 0:
            return
        x = as_markers(v.detach().to(F64), iv.lo, iv.hi)
        tol = 1e-9 * x.abs() + 1e-12
        assert not bool(((x < iv.lo - tol) | (x > iv.hi + tol)).any()), node
        if node in marked:
            assert bool((v[torch.isneginf(iv.hi)] <= -(2.0**64)).all())
            seen += 1

    for xs in loaded.sample_inputs(20, gen):
        node_values(cap, xs, visit=visit)
    assert seen > 0


class FixedAttention(torch.nn.Module):
    """A fixed causal attention pattern: softmax read straight from a -inf buffer."""

    def __init__(self, t: int = 4) -> None:
        super().__init__()
        keep = torch.tril(torch.ones(t, t, dtype=torch.bool))
        self.register_buffer("mask", torch.where(keep, 0.0, -math.inf))

    def forward(self, x):
        return torch.softmax(self.mask, -1) @ x


def test_an_infinity_cast_into_fp8_e4m3_is_refused():
    """fp8_e4m3 has no infinity: the cast of -inf (or of a marker) is NaN. The softmax's
    output holds no infinity, so the cast itself must be caught."""
    _, bounds = _bound(FixedAttention().eval(), [box((4, 3), -1.0, 1.0)], ["fp32", "bf16", "fp8_e5m2", "fp8_e4m3"])
    assert all(math.isfinite(bounds[f]) for f in ("fp32", "bf16", "fp8_e5m2")), bounds
    assert bounds["fp8_e4m3"] == math.inf


class FullyMaskedRow(torch.nn.Module):
    """A row masked everywhere with finfo.min: its softmax is that of what was added to the
    mask (shift invariance), uniform only in float arithmetic. Markers cannot say that: the
    softmax declines (fail closed), where it used to claim 3e-6 in fp32."""

    def __init__(self) -> None:
        super().__init__()
        keep = torch.tensor([[True, False, False], [False, False, False]])
        self.register_buffer("m", torch.where(keep, 0.0, torch.finfo(torch.float32).min))

    def forward(self, x):
        return torch.softmax(x * 0.1 + self.m, -1) @ x.t()


def test_a_fully_masked_row_fails_closed():
    _, cap, loaded = build(FullyMaskedRow().eval(), [box((2, 3), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert any(u["op"].endswith("_softmax.default") for u in ba.unsupported), ba.unsupported
    res = certified_errors(ba, [{"*": "fp32"}], keep_nodes=False)
    assert res.bound[0] == math.inf
