"""RMS normalisation (curvature_rules.rmsnorm): the chain x * rsqrt(mean(x^2) + c) as Llama,
T5 and torch.nn.RMSNorm export it. Sampled by the rule harness (the range with the rsqrt
tied to x, the rounding against real bf16 / fp16 / fp32 runs), compared with the op-by-op
bounds it replaces, and fail-closed where the pattern does not hold."""

import math

import pytest
import torch

from curvature_rules import rmsnorm
from tests.rules.harness import box, check_rule, shrink_range, wrong_rule

aten = torch.ops.aten
F64 = torch.float64


class HfRms(torch.nn.Module):
    """Hugging Face's LlamaRMSNorm / T5LayerNorm, as written there."""

    def __init__(self, n: int, eps: float = 1e-6, square: str = "pow") -> None:
        super().__init__()
        self.eps, self.square = eps, square
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        dt = x.dtype
        h = x.to(torch.float32)
        sq = h.pow(2) if self.square == "pow" else h * h
        h = h * torch.rsqrt(sq.mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


class TorchRms(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.norm = torch.nn.RMSNorm(n, eps=1e-6)

    def forward(self, x):
        return self.norm(x)


FORMATS = ["fp32", "bf16", "fp16"]


@pytest.mark.parametrize(
    "mod,lo,hi",
    [
        (HfRms(16), -0.1, 0.1),
        (HfRms(16, square="mul"), -0.1, 0.1),
        (HfRms(8, eps=1e-5), 0.02, 3.0),  # a box away from 0: mean(x^2) >= 4e-4
        (TorchRms(12), -2.0, 2.0),
    ],
)
def test_rms_chain_is_sound_by_sampling(mod, lo, hi):
    n = mod.weight.numel() if hasattr(mod, "weight") else mod.norm.weight.numel()
    rep = check_rule(mod, [box((3, n), lo, hi)], [aten.mul.Tensor, aten.rsqrt.default], formats=FORMATS, n_round=60, require_finite=True)
    assert rep.range_checked > 0
    assert set(rep.error_ratio) == set(FORMATS)
    assert all(math.isfinite(rep.bounds[f]) for f in FORMATS), rep.bounds
    print(rep.bounds, rep.error_ratio)


def test_range_is_the_rms_image_not_the_box_product():
    """|x_i| / sqrt(mean(x^2) + c) <= sqrt(n): x in [-0.1, 0.1]^16 with c = 1e-6 gives at most
    0.1 / sqrt(0.01 / 16 + 1e-6) = 3.997, where the box product gives 0.1 * 1000 = 100."""
    from tests.rules.harness import build
    from certifier.walker import analyze_bounds

    _, cap, loaded = build(HfRms(16), [box((2, 16), -0.1, 0.1)], None, True)
    ba = analyze_bounds(loaded, cap)
    muls = [i for i in ba.nodes.values() if i.node is not None and i.node.target is aten.mul.Tensor]
    norm = next(i for i in muls if any(getattr(a, "target", None) is aten.rsqrt.default for a in i.node.args))
    expect = 0.1 / math.sqrt(0.01 / 16 + 1e-6)
    assert expect <= float(norm.primary.hi.max()) <= expect * (1 + 1e-9)
    assert float(norm.primary.lo.min()) == pytest.approx(-expect, rel=1e-9)


def test_a_shrunk_rms_image_is_caught():
    """The harness's range check (rsqrt tied to x) can fail: a range shrunk by 10% is caught."""
    with wrong_rule(aten.mul.Tensor, shrink_range), pytest.raises(AssertionError):
        check_rule(HfRms(16), [box((3, 16), -0.1, 0.1)], aten.mul.Tensor, formats=None)


class SplitModules(torch.nn.Module):
    """The mean square in one module, the scaling in another: they may run in different
    formats, so the chain is not matched (the op-by-op bounds apply)."""

    def __init__(self) -> None:
        super().__init__()
        self.ms = _MeanSq()

    def forward(self, x):
        return x * torch.rsqrt(self.ms(x) + 1e-6)


class _MeanSq(torch.nn.Module):
    def forward(self, x):
        return x.pow(2).mean(-1, keepdim=True)


class WrongConstant(torch.nn.Module):
    """rsqrt(mean(x^2) - c): not an RMSNorm (no positive constant)."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 0.0)


class OtherValue(torch.nn.Module):
    """y * rsqrt(mean(x^2) + c) with y != x: no sqrt(n) bound."""

    def forward(self, x):
        return (x + 1) * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


@pytest.mark.parametrize("mod,rsqrt_matched", [(SplitModules(), False), (WrongConstant(), False), (OtherValue(), True)])
def test_other_shapes_of_the_chain_are_not_matched(mod, rsqrt_matched):
    """The mul keeps the plain box product (and its own error model); the rsqrt is a chain
    of its own only when it is rsqrt(mean(x^2) + c) in one module."""
    from tests.rules.harness import build
    from certifier.interval import mul_bounds
    from certifier.walker import analyze_bounds

    _, cap, loaded = build(mod, [box((2, 16), 0.01, 0.1)], None, True)
    ba = analyze_bounds(loaded, cap)
    rs = [i for i in ba.nodes.values() if i.node is not None and i.node.target is aten.rsqrt.default]
    assert len(rs) == 1 and (rmsnorm.match(rs[0].node) is not None) == rsqrt_matched
    mul = next(i for i in ba.nodes.values() if i.node is not None and i.node.target is aten.mul.Tensor and rs[0].node in i.node.args)
    assert type(mul.result.error).__name__ == "BinaryError"
    a, b = (ba.nodes[p].primary for p in mul.producers.values())
    lo, hi = mul_bounds(a.lo, a.hi, b.lo, b.hi)
    assert bool((mul.primary.hi >= hi).all()) and bool((mul.primary.lo <= lo).all())
