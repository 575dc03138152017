"""The l2 ball side domain (certifier.ball): rigorous operator norms, the water-filling bound,
and the balls themselves, checked by sampling and by gradient ascent on ||y(x) - c||."""

import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from certifier.ball import conv_norm_upper, sigma_max_upper, weighted_abs_sup
from certifier.interval import Interval
from certifier.capture import capture
from certifier.loader import InputSpec, LoadedModel
from certifier.trace import node_values
from certifier.walker import analyze_bounds

F64 = torch.float64


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (256, 784), (10, 256), (4, 5, 6), (64, 64)])
def test_sigma_max_upper_is_above_and_close(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for M in (torch.randn(*shape, generator=g, dtype=F64), torch.rand(*shape, generator=g, dtype=F64) * 1e-30,
              torch.complex(torch.randn(*shape, generator=g, dtype=F64), torch.randn(*shape, generator=g, dtype=F64))):
        true = torch.linalg.matrix_norm(M, 2)
        up = sigma_max_upper(M)
        assert bool((up >= true).all())
        assert bool((up <= true * 1.03 + 1e-300).all()), (up, true)


def test_sigma_max_upper_low_rank_and_zero():
    u = torch.randn(300, 1, dtype=F64)
    M = u @ torch.randn(1, 200, dtype=F64)  # rank 1: Frobenius = spectral
    assert float(sigma_max_upper(M)) >= float(torch.linalg.matrix_norm(M, 2))
    assert float(sigma_max_upper(torch.zeros(5, 4, dtype=F64))) < 1e-250


def _conv_matrix(w, shape, stride, padding, dilation, groups):
    n = math.prod(shape)
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    out = torch.nn.functional.conv2d(basis, w, None, stride, padding, dilation, groups)
    return out.reshape(n, -1)


@pytest.mark.parametrize("seed", range(12))
def test_conv_norm_upper_bounds_the_operator(seed):
    rng = random.Random(seed)
    groups = rng.choice([1, 1, 2])
    ci, co = 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)
    k = rng.choice([1, 2, 3, 5])
    H, W = rng.randint(k + 1, 9), rng.randint(k + 1, 9)
    stride, pad, dil = [rng.choice([1, 2]), rng.choice([1, 3])], [rng.choice([0, 1, 2])] * 2, [rng.choice([1, 2]), 1]
    if (k - 1) * dil[0] + 1 > H + 2 * pad[0]:
        dil = [1, 1]
    torch.manual_seed(seed)
    w = torch.randn(co, ci // groups, k, k, dtype=F64)
    A = _conv_matrix(w, (ci, H, W), stride, pad, dil, groups)
    true = float(torch.linalg.matrix_norm(A, 2))
    up = conv_norm_upper(w, (H, W), stride, pad, dil, groups)
    assert up is not None and up >= true, (up, true)
    if stride == [1, 1]:
        assert up <= 3 * true + 1e-12  # the circular embedding is a mild relaxation


def test_weighted_abs_sup_against_ascent():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        n = 30
        c = torch.randn(n, generator=g, dtype=F64)
        mag = c.abs() + torch.rand(n, generator=g, dtype=F64) * 3
        rho = float(torch.rand(1, generator=g)) * 5
        v = torch.rand(3, n, generator=g, dtype=F64)
        v[0, :5] = 0
        up = weighted_abs_sup(v, c, mag, rho)
        box = (v * mag).sum(1)
        assert bool((up <= box * (1 + 1e-12)).all())
        # random feasible points: y = c + t, |y| <= mag, ||t|| <= rho
        for _ in range(200):
            t = torch.randn(n, generator=g, dtype=F64)
            t = t / t.norm() * rho * float(torch.rand(1, generator=g))
            y = torch.maximum(torch.minimum(c + t, mag), -mag)
            assert bool(((v * y.abs()).sum(1) <= up * (1 + 1e-12)).all())
        # the relaxation's own optimum is reached: t_i = min(cap_i, lam v_i)
        cap = (mag - c.abs()).clamp(min=0)
        lo, hi = 0.0, 1e9
        for _ in range(200):
            lam = (lo + hi) / 2
            if (torch.minimum(cap, lam * v[1]) ** 2).sum() > rho**2:
                hi = lam
            else:
                lo = lam
        val = (v[1] * (c.abs() + torch.minimum(cap, lo * v[1]))).sum()
        assert float(up[1]) >= float(val) * (1 - 1e-12)
        assert float(up[1]) <= float(val) * (1 + 1e-6) + 1e-12 or float(up[1]) == pytest.approx(float(box[1]))


def _loaded(model, shape, lo, hi):
    return LoadedModel(Path("t.py"), "t", model.eval(), (torch.zeros(shape),), [InputSpec(tuple(shape), torch.float32, lo, hi)], "")


class _Res(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)) + x) - 0.5 * x


def _models():
    torch.manual_seed(0)
    yield "mlp", nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 3)), (1, 20), 0.0, 1.0
    yield "cnn", nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 1), nn.Conv2d(4, 3, 2, stride=2),
                               nn.GELU(), nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(3 * 2 * 2, 2)), (1, 2, 8, 8), -1.0, 1.0
    yield "residual", _Res(12), (3, 12), -2.0, 2.0


@pytest.mark.parametrize("which", ["mlp", "cnn", "residual"])
def test_balls_hold_by_sampling_and_ascent(which):
    name, model, shape, lo, hi = next(m for m in _models() if m[0] == which)
    if which == "cnn":
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.3, 0.3)
            model[1].running_var.uniform_(0.5, 2.0)
    lm = _loaded(model, shape, lo, hi)
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    balls = {k: i.ball for k, i in ba.nodes.items() if i.ball is not None and i.kind == "call"}
    assert len(balls) >= 4, sorted(balls)
    worst = {k: 0.0 for k in balls}

    def check(x):
        vals = node_values(cap, (x,))
        for k, b in balls.items():
            v = vals[k][0] if isinstance(vals[k], (tuple, list)) else vals[k]
            d = float((v.detach().to(F64) - b.center).norm())
            assert d <= b.radius * (1 + 1e-9) + 1e-12, (k, d, b.radius)
            worst[k] = max(worst[k], d / b.radius if b.radius > 0 else 0.0)

    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        check(lo + (hi - lo) * torch.rand(shape, generator=g, dtype=F64))
    # ascent on the distance to the last ball's center
    last = list(balls)[-1]
    x = (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=F64)).requires_grad_(True)
    for _ in range(40):
        vals = node_values(cap, (x,), grad=True)
        d = (vals[last] - balls[last].center).norm()
        (gx,) = torch.autograd.grad(d, x)
        with torch.no_grad():
            x = (x + 0.2 * (hi - lo) * gx.sign()).clamp(lo, hi)
        x.requires_grad_(True)
        check(x.detach())
    assert max(worst.values()) > 0.01  # the check saw values far from the centers


# ---------------------------------------------------------------------- the adjoint's couplings
def _mlp_setup(**kw):
    from certifier.loader import load_model
    from conftest import EXAMPLES

    lm = load_model(EXAMPLES / "mlp.py")
    cap = capture(lm)
    return lm, cap, analyze_bounds(lm, cap, **kw)


@pytest.mark.parametrize("fmt", ["fp32", "tf32", "bf16", "fp16", "fp8_e4m3"])
@pytest.mark.parametrize("alpha,beta,bias", [(1.0, 1.0, True), (0.5, 1.0, True), (1.0, 2.0, True), (0.5, 1.0, False), (1.0, 1.0, False)])
def test_bilinear_slopes_are_the_bound_s_derivatives(fmt, alpha, beta, bias):
    """The couplings subtract slope x (box magnitude - joint bound); a slope above the bound's
    true derivative would over-subtract. propagate is affine in fmag(out) and in AB: check
    both slopes against finite differences of the bound itself."""
    from dataclasses import replace

    from certifier.adjoint import _LocalCtx
    from certifier.rounding import _Run
    from curvature_rules._common import fmag

    lm, cap, ba = _mlp_setup()
    info = ba.nodes["addmm_1"]
    m = info.result.error
    m = replace(m, alpha=alpha, beta=beta, bias=m.bias if bias else None, bias_name=m.bias_name if bias else None)
    run = _Run(ba, [{L: fmt for L in ba.layers}], local_only=False)
    ctx = _LocalCtx(run, info, {"mat1"}, frozenset({"mat2", "self"}))
    W = Interval.point(m.B.value.to(torch.float32))
    m = replace(m, B=W)
    # the charged bound stores by the binade of |y| (not affine in it) and is at most the
    # linear one, which is what the couplings take back from (adjoint._couple_out)
    binade = m.propagate(ctx)[0]
    ctx.linear = True
    base = m.propagate(ctx)[0]
    assert bool((binade <= base).all())
    # output magnitudes doubled
    big = replace(m, out=Interval(m.out.lo * 2, m.out.hi * 2, m.out.dtype))
    d_out = big.propagate(ctx)[0] - base
    s_out = float(m.out_slope(ctx)[0])
    dm = fmag(m.out) * 1.0
    assert torch.allclose(d_out, s_out * dm, rtol=1e-6, atol=1e-300)
    # input magnitudes doubled: AB doubles
    from curvature_rules.linear import upper32

    bigx = replace(m, A=Interval(m.A.lo * 2, m.A.hi * 2, m.A.dtype))
    d_in = bigx.propagate(ctx)[0] - base
    AB = upper32(m.op, fmag(m.A), None, m.k, b32=W.value.abs(), bmax=float(W.value.abs().max()))
    s_in = float(m.in_slope(ctx)[0])
    # eta_mul (tf32 subnormal) terms scale with the operand maxima, not AB: at most the
    # slope times AB plus that (tiny) term
    assert bool((d_in >= s_in * AB * (1 - 1e-6)).all())
    assert bool((d_in <= s_in * AB * (1 + 1e-6) + 1e-30).all())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_relational_bounds_are_not_worse(name):
    """The ball only intersects boxes and takes back charges: every uniform bound with it is at
    most the box-only bound."""
    from certifier.adjoint import certified_errors
    from certifier.loader import load_model
    from conftest import EXAMPLES

    lm = load_model(EXAMPLES / f"{name}.py")
    cap = capture(lm)
    fm = ["fp32", "tf32", "bf16", "fp16", "fp8_e5m2"]
    out = []
    for rel in (False, True):
        ba = analyze_bounds(lm, cap, relational=rel)
        out.append(certified_errors(ba, [{L: f for L in ba.layers} for f in fm]).bound)
    for f, b0, b1 in zip(fm, *out):
        assert b1 <= b0 * (1 + 1e-9), (f, b0, b1)
    if name == "mlp":  # the MLP's fp16 bound drops > 10x (0.70 -> 0.032 when written)
        assert out[1][3] < out[0][3] / 10


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "fp16", "fp8_e5m2"])
def test_batch_norm_and_avg_pool_out_slopes(fmt):
    """BatchNormError's bound is affine in fmag(out) with slope u (what the adjoint's coupling
    takes back), AvgPoolError's with AvgPoolError.out_slope."""
    from dataclasses import replace

    from certifier.adjoint import _LocalCtx
    from certifier.loader import load_model
    from certifier.rounding import _Run
    from conftest import EXAMPLES
    from curvature_rules._common import fmag

    lm = load_model(EXAMPLES / "cnn.py")
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    run = _Run(ba, [{L: fmt for L in ba.layers}], local_only=False)
    bn = ba.nodes["_native_batch_norm_legit_no_training_1"]
    m = bn.result.error
    ctx = _LocalCtx(run, bn, {"input"})
    ctx.linear = True  # the linear storage bound the couplings take back from
    out = bn.out[0]
    d = replace(m, out=Interval(out.lo * 2, out.hi * 2, out.dtype)).propagate(ctx)[0] - m.propagate(ctx)[0]
    assert torch.allclose(d, float(ctx.u[0]) * fmag(out), rtol=1e-6, atol=1e-300)
    ap = ba.nodes["_adaptive_avg_pool2d"]
    m = ap.result.error
    ctx = _LocalCtx(run, ap, {"self"})
    ctx.linear = True
    d = replace(m, out=Interval(m.out.lo * 2, m.out.hi * 2, m.out.dtype)).propagate(ctx) - m.propagate(ctx)
    assert torch.allclose(d, float(m.out_slope(ctx)[0]) * fmag(m.out), rtol=1e-6, atol=1e-300)


def test_l2_upper_rows_bounds_each_row():
    from certifier.ball import l2_upper, l2_upper_rows

    g = torch.Generator().manual_seed(3)
    M = torch.randn(6, 50, generator=g, dtype=F64) * torch.logspace(-200, 200, 6, dtype=F64).reshape(6, 1)
    M[2] = 0.0
    M[4, 7] = math.inf
    up = l2_upper_rows(M)
    mx = M.abs().amax(1, keepdim=True).clamp(min=1e-300)
    true = (M / mx).norm(dim=1) * mx[:, 0]  # scaled: squares of 1e-200 underflow
    for i in (0, 1, 3, 5):
        assert float(up[i]) >= float(true[i]) and float(up[i]) <= float(true[i]) * (1 + 1e-10)
        assert float(up[i]) == pytest.approx(l2_upper(M[i]), rel=1e-12)
    assert float(up[2]) == 0.0 and math.isinf(float(up[4]))
    assert math.isinf(l2_upper(torch.tensor([1.0, math.nan], dtype=F64))) and l2_upper(torch.zeros(0)) == 0.0
    assert l2_upper(torch.tensor(-3.0, dtype=F64)) >= 3.0  # a 0-d tensor


def test_batch_norm_after_a_convolution_takes_the_scaled_map_norm():
    """conv -> batch norm with one channel scaled by 4 and three by 0.25: the batch norm's ball
    is ||diag(s) W|| rho_x (one affine map of the convolution's input), well below
    max|s| times the convolution's radius; it holds at random inputs, at the box corners
    along the scaled map's top singular vector, and under an ascent on the distance."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.3, 0.3)
        model[1].running_var.copy_(torch.tensor([1 / 16, 16.0, 16.0, 16.0]) - model[1].eps)
    shape = (1, 1, 8, 8)
    lm = _loaded(model, shape, -1.0, 1.0)
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    conv = next(i for i in ba.nodes.values() if i.op == "convolution")
    bn = next(i for i in ba.nodes.values() if i.kind == "call" and "batch_norm" in i.op)
    assert bn.ball is not None and conv.ball is not None
    assert bn.ball.radius < 0.7 * 4.0 * conv.ball.radius  # the scaled map, not max|s| ||W||
    W = model[0].weight.detach().to(F64) * torch.tensor([4.0, 0.25, 0.25, 0.25], dtype=F64).view(-1, 1, 1, 1)
    worst = 0.0

    def dist(x):
        v = node_values(cap, (x,))[bn.name]
        v = v[0] if isinstance(v, (tuple, list)) else v
        return float((v.detach().to(F64) - bn.ball.center).norm())

    g = torch.Generator().manual_seed(2)
    for _ in range(40):
        worst = max(worst, dist(-1 + 2 * torch.rand(shape, generator=g, dtype=F64)))
    # the top right singular vector of x -> conv(x, diag(s) W), by power iteration
    v = torch.randn(shape, generator=g, dtype=F64)
    for _ in range(60):
        u = torch.nn.functional.conv2d(v, W, padding=1)
        v = torch.nn.functional.conv_transpose2d(u, W, padding=1)
        v = v / v.norm()
    for sgn in (1.0, -1.0):
        worst = max(worst, dist(sgn * v.sign()))
    x = (-1 + 2 * torch.rand(shape, generator=g, dtype=F64)).requires_grad_(True)
    for _ in range(40):
        vals = node_values(cap, (x,), grad=True)
        out = vals[bn.name][0] if isinstance(vals[bn.name], (tuple, list)) else vals[bn.name]
        (gx,) = torch.autograd.grad((out - bn.ball.center).norm(), x)
        with torch.no_grad():
            x = (x + 0.4 * gx.sign()).clamp(-1, 1)
        x.requires_grad_(True)
        worst = max(worst, dist(x.detach()))
    assert worst <= bn.ball.radius
    assert worst > 0.5 * bn.ball.radius  # the corners reach most of it: the bound is tight
