"""Sampling soundness of curvature_rules.norm: native_layer_norm (LayerNorm) and eval-mode
batch norm (_native_batch_norm_legit_no_training)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.rules.harness import Suite, box, check_rule

aten = torch.ops.aten
LN = aten.native_layer_norm.default
BN = aten._native_batch_norm_legit_no_training.default
SUITE = Suite()


def layer_norm_reference(input, normalized_shape, weight, bias, eps):
    """native_layer_norm in float64 with exact centring: PyTorch's float64 kernel loses
    ~|mean|/sigma ulps in the variance (3e-14 relative on rows in [-1000, -999.5]), more
    than the rules' 2^-48 widening; two passes (x - mu is exact by Sterbenz where it
    matters, and the second pass removes the error of mu) bring it back to a few ulps."""
    dims = tuple(range(-len(normalized_shape), 0))
    mu = input.mean(dims, keepdim=True)
    d = input - mu
    mu2 = d.mean(dims, keepdim=True)
    d = d - mu2
    var = (d * d).mean(dims, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    y = d * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mu + mu2, rstd


REF = {LN: layer_norm_reference}


def _init(m: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return m.eval()


def _bn(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    _init(m, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.05)
    return m.eval()


LAYERS = [
    ("ln", _init(torch.nn.LayerNorm(8), 0), (3, 8)),
    ("ln_no_affine", torch.nn.LayerNorm(6, elementwise_affine=False).eval(), (2, 6)),
    ("ln_2d_shape", _init(torch.nn.LayerNorm((4, 3)), 1), (2, 4, 3)),
    ("ln_big_eps", _init(torch.nn.LayerNorm(5, eps=1e-2), 2, scale=3.0), (2, 5)),
    ("ln_small_gamma", _init(torch.nn.LayerNorm(4), 3, scale=1e-2), (2, 4)),
]
LN_CASES = {c[0]: SUITE.case(c[1], [box(c[2], -1.0, 1.0)]) for c in LAYERS}
LN_BOXES = [(-1.0, 1.0), (1.0, 1.001), (0.0, 10.0), (-1000.0, -999.5), (-1e-3, 1e-3)]


@pytest.mark.parametrize("name,shape", [pytest.param(c[0], c[2], id=c[0]) for c in LAYERS])
@pytest.mark.parametrize("lo,hi", LN_BOXES)
def test_layer_norm(name, shape, lo, hi):
    # Critical point: the box midpoint, so that some rows are nearly constant (variance ->
    # 0, where L and kappa peak).
    LN_CASES[name].check([box(shape, lo, hi)], LN, n=16, reference=REF, critical=[(lo + hi) / 2])


LN_PER_ELEMENT = _init(torch.nn.LayerNorm(6), 4)


@pytest.mark.parametrize(
    "lo,width",
    [
        (torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [3.0, -1.0, 2.0, 0.0, 1.0, -2.0]]), 0.01),  # positive variance floor
        (torch.tensor([[100.0, 100.001, 100.002, 100.003, 100.004, 100.005]] * 2), 1e-4),  # small variance, large mean
        (torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]] * 2), 0.5),  # boxes overlap: var_min from bisection
    ],
    ids=["spread", "small_var_large_mean", "overlap"],
)
def test_layer_norm_per_element_rows(lo, width):
    """Rows whose elements live in different boxes: the variance lower bound (bisection)
    sets s_min, L and kappa."""
    check_rule(LN_PER_ELEMENT, [box((2, 6), lo, lo + width)], LN, n=16, reference=REF)


LN_FN = SUITE.case(lambda x, w, b: F.layer_norm(x, (5,), w, b), [box((2, 5), -1, 1), box((5,), 0.5, 1.5), box((5,), -1, 1)])


@pytest.mark.parametrize("bx", [(-1.0, 1.0), (2.0, 3.0)])
def test_layer_norm_computed_affine(bx):
    """gamma and beta computed by the model (boxes, not weights): L and kappa must cover them."""
    LN_FN.check([box((2, 5), *bx), box((5,), 0.5, 1.5), box((5,), -1.0, 1.0)], LN, n=16, reference=REF)


BNS = [
    ("bn2d", _bn(torch.nn.BatchNorm2d(3), 10), (2, 3, 2, 2)),
    ("bn1d", _bn(torch.nn.BatchNorm1d(4), 11), (3, 4)),
    ("bn1d_seq", _bn(torch.nn.BatchNorm1d(2, affine=False), 12), (2, 2, 5)),
]
BN_CASES = {c[0]: SUITE.case(c[1], [box(c[2], -1.0, 1.0)]) for c in BNS}


@pytest.mark.parametrize("name,shape", [pytest.param(c[0], c[2], id=c[0]) for c in BNS])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (10.0, 20.0), (-1e-3, 1e-3), (-300.0, 200.0)])
def test_batch_norm_eval(name, shape, lo, hi):
    BN_CASES[name].check([box(shape, lo, hi)], BN, n=16)


LN_STATS = SUITE.case(lambda x: aten.native_layer_norm(x, [4], None, None, 1e-5)[2] * 2.0, [box((3, 4), -1, 1)])


def test_layer_norm_rstd_consumer_fails_closed():
    """Regression: the mean/rstd outputs had no error model (None, read as exact): a model
    using rstd got the bound 0 in every format. Their error is now infinite (fail closed);
    their ranges are checked here too."""
    rep = LN_STATS.check(None, LN, n=16, reference=REF, formats=("fp16", "fp32"))
    assert rep.bounds == {"fp16": float("inf"), "fp32": float("inf")}


GN = aten.native_group_norm.default
BNS_STATS = aten._native_batch_norm_legit.no_stats


def _per_channel(y, input, weight, bias):
    """y (input's shape) times gamma plus beta, one per channel (dim 1)."""
    bshape = (1, input.shape[1]) + (1,) * (input.dim() - 2)
    y = y.reshape(input.shape)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


def group_norm_reference(input, weight, bias, N, C, HxW, group, eps):
    """native_group_norm: layer_norm_reference over each group's row, then the affine map."""
    y, mu, rstd = layer_norm_reference(input.reshape(N, group, -1), [(C // group) * HxW], None, None, eps)
    return _per_channel(y, input, weight, bias), mu.reshape(N, group), rstd.reshape(N, group)


def batch_stats_reference(input, weight, bias, training, momentum, eps):
    """_native_batch_norm_legit.no_stats on a batch of one: one row per channel."""
    C = input.shape[1]
    y, mu, rstd = layer_norm_reference(input.reshape(C, -1), [input[0, 0].numel()], None, None, eps)
    return _per_channel(y, input, weight, bias), mu.reshape(C), rstd.reshape(C)


GREF = {GN: group_norm_reference, BNS_STATS: batch_stats_reference}
GROUPED = [
    ("gn", _init(torch.nn.GroupNorm(2, 4), 20), (1, 4, 3, 3), GN),
    ("gn_batch2_1d", _init(torch.nn.GroupNorm(3, 6), 21), (2, 6, 5), GN),
    ("gn_no_affine", torch.nn.GroupNorm(1, 3, affine=False).eval(), (1, 3, 2, 2), GN),
    ("gn_per_channel", _init(torch.nn.GroupNorm(4, 4, eps=1e-3), 22, scale=2.0), (1, 4, 2, 3), GN),
    ("in2d", _init(torch.nn.InstanceNorm2d(3, affine=True), 23), (1, 3, 3, 3), BNS_STATS),
    ("in2d_batch2", _init(torch.nn.InstanceNorm2d(2, affine=True), 24), (2, 2, 2, 3), BNS_STATS),
    ("in1d_plain", torch.nn.InstanceNorm1d(3).eval(), (1, 3, 7), BNS_STATS),
    ("bn_batch_stats", _init(torch.nn.BatchNorm2d(3, track_running_stats=False), 25), (1, 3, 2, 2), BNS_STATS),
]
GROUPED_CASES = {c[0]: SUITE.case(c[1], [box(c[2], -1.0, 1.0)]) for c in GROUPED}


@pytest.mark.parametrize("name,shape,op", [pytest.param(*c[0:1], c[2], c[3], id=c[0]) for c in GROUPED])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (1.0, 1.001), (0.0, 10.0), (-1000.0, -999.5)])
def test_group_and_instance_norm(name, shape, op, lo, hi):
    """GroupNorm, InstanceNorm and batch-statistics BatchNorm: the row normalization of
    LayerNorm over groups of channels, with a per-channel affine map the kernel fuses
    (y = x s + t): range, L, kappa and the fused kernel's rounding against fp32/bf16/fp16."""
    GROUPED_CASES[name].check([box(shape, lo, hi)], op, n=16, reference=GREF, critical=[(lo + hi) / 2])


def test_group_norm_per_element_rows():
    """Channels in different boxes within a group: the variance floor comes from the
    bisection and sets s_min; the per-channel gammas differ in sign and size."""
    lo = torch.tensor([0.0, 0.5, -2.0, 3.0]).reshape(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    check_rule(_init(torch.nn.GroupNorm(2, 4), 26, scale=3.0), [box((1, 4, 2, 2), lo, lo + 0.05)], GN, n=16, reference=GREF)


def test_batch_statistics_over_samples_declined():
    """Batch statistics across a batch of several samples couple them: declined (fail
    closed, unbounded), never analysed as if each sample were normalized alone."""
    from certifier.rounding import run_errors
    from certifier.walker import analyze_bounds
    from tests.rules.harness import build

    _, cap, lm = build(_init(torch.nn.BatchNorm1d(3, track_running_stats=False), 27), [box((4, 3), -1.0, 1.0)], None, True)
    ba = analyze_bounds(lm, cap)
    assert [u["op"] for u in ba.unsupported] == [str(BNS_STATS)]
    assert "more than one sample" in ba.unsupported[0]["reason"]
    assert run_errors(ba, [{"*": "fp32"}]).bound[0] == float("inf")


VAR = aten.var.correction
VAR_MEAN = aten.var_mean.correction


def var_reference(input, dim=None, *, correction=None, keepdim=False):
    """var in float64 with exact centring (two passes, as layer_norm_reference)."""
    dims = tuple(range(input.dim())) if dim is None else tuple(dim)
    n = 1
    for d in dims:
        n *= input.shape[d]
    mu = input.mean(dims, keepdim=True)
    d = input - mu
    mu2 = d.mean(dims, keepdim=True)
    d = d - mu2
    c = 1.0 if correction is None else float(correction)
    v = (d * d).sum(dims, keepdim=keepdim) / (n - c)
    return v


def var_mean_reference(input, dim=None, *, correction=None, keepdim=False):
    dims = tuple(range(input.dim())) if dim is None else tuple(dim)
    return var_reference(input, dim, correction=correction, keepdim=keepdim), input.mean(dims, keepdim=keepdim)


VREF = {VAR: var_reference, VAR_MEAN: var_mean_reference}
VARS = [
    ("var_last", lambda x: x.var(-1) * 1.5, (3, 8), VAR),
    ("var_dims_keep", lambda x: x.var((1, 2), keepdim=True, correction=0) * 1.5, (2, 3, 4), VAR),
    ("var_all", lambda x: x.var() * 1.5, (2, 5), VAR),
    ("var_mean", lambda x: torch.var_mean(x, 0, correction=2)[0] + torch.var_mean(x, 0, correction=2)[1], (6, 3), VAR_MEAN),
]
VAR_CASES = {c[0]: SUITE.case(c[1], [box(c[2], -1.0, 1.0)]) for c in VARS}


@pytest.mark.parametrize("name,shape,op", [pytest.param(c[0], c[2], c[3], id=c[0]) for c in VARS])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (1000.0, 1000.5), (0.0, 10.0), (-1e-3, 1e-3)])
def test_variance(name, shape, op, lo, hi):
    """var / var_mean: range (LayerNorm's variance bounds), L = 2 n sqrt(var_max)/(n - c),
    kappa = n/(n - c), and the rounding of the kernel against real runs."""
    VAR_CASES[name].check([box(shape, lo, hi)], op, n=16, reference=VREF, critical=[(lo + hi) / 2])


STD = SUITE.case(lambda x: x.std(-1), [box((2, 4), -1.0, 1.0)])


def test_std_of_spread_rows_is_bounded():
    """std = sqrt(var): bounded where the rows' boxes keep the variance above 0 (here the
    elements sit in disjoint boxes), unbounded (fail closed) where a row may be constant."""
    lo = torch.tensor([[0.0, 1.0, 2.0, 3.0], [-3.0, 0.0, 0.5, 4.0]])
    rep = check_rule(lambda x: x.std(-1), [box((2, 4), lo, lo + 0.1)], VAR, n=16, reference=VREF)
    assert all(math.isfinite(b) for b in rep.bounds.values())
    flat = STD.check(None, VAR, n=4, formats=("fp32",), require_finite=False)
    assert flat.bounds == {"fp32": float("inf")}
