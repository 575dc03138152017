"""log and log1p read a relative input bound (curvature_rules._common.LogError): checked on
their own by sampling, and end to end on models whose absolute errors alone are unbounded
(log of a sum of exps, softplus written as log1p(exp(x)), mish)."""

import math

import pytest
import torch

from certifier.adjoint import certified_errors
from certifier.formats import FORMATS
from certifier.interval import Interval
from certifier.validate import ErrorProbe, cast_model
from certifier.walker import analyze_bounds
from curvature_rules._common import Log1pError, LogError, _log_ratio_bound
from tests.rules.harness import box, build

F64 = torch.float64


class _RelCtx:
    """An ErrorContext with an absolute bound ``e`` and a relative one ``(R, A)``."""

    def __init__(self, e, R, A):
        self.F = e.shape[0]
        self._e, self._r = e, (R, A)

    def err(self, name):
        return self._e

    def rel(self, name):
        return self._r


def test_log_ratio_bound_is_attained_at_one_minus_t():
    t = torch.tensor([0.0, 1e-8, 0.1, 0.5, 0.999, 1.0, 3.0], dtype=F64)
    b = _log_ratio_bound(t)
    for ti, bi in zip(t.tolist(), b.tolist()):
        if ti >= 1:
            assert bi == math.inf
            continue
        exact = -math.log1p(-ti)  # |log q| at q = 1 - t, the worst point
        assert exact <= bi <= exact * (1 + 1e-10) + 1e-300
        assert math.log1p(ti) <= bi  # and q = 1 + t


@pytest.mark.parametrize("kind", ["log", "log1p"])
def test_relative_bound_holds_for_sampled_perturbations(kind):
    """|f(x^) - f(x)| <= carried bound for x in the box and any x^ with |x^ - x| <= R|x| + A."""
    gen = torch.Generator().manual_seed(0)
    if kind == "log":
        lo = torch.tensor([1e-6, 0.5, 3.0, 1e3], dtype=F64)
        hi = torch.tensor([1e-3, 2.0, 3.5, 1e6], dtype=F64)
        f, cls = torch.log, LogError
    else:
        lo = torch.tensor([-0.9, -0.3, 0.0, 5.0], dtype=F64)
        hi = torch.tensor([-0.5, 0.4, 1e-3, 400.0], dtype=F64)
        f, cls = torch.log1p, Log1pError
    x_iv = Interval(lo, hi, torch.float32)
    y_iv = Interval(f(lo), f(hi), torch.float32)
    # the absolute bound alone is useless here (the widened box leaves the domain)
    e = torch.full((1, 4), 1e9, dtype=F64)
    R = torch.tensor([[0.05, 0.2, 1e-3, 0.3]], dtype=F64)
    A = torch.tensor([[1e-9, 1e-3, 1e-4, 0.5]], dtype=F64)
    edge = 0.0 if kind == "log" else -1.0
    dsup = lambda a, b: torch.where(a > edge, 1.0 / (a - edge), torch.full_like(a, math.inf))  # noqa: E731
    model = cls(x_iv, y_iv, dsup, 4.0)
    bound = model.carried(_RelCtx(e, R, A), e)[0]
    assert torch.isfinite(bound).all()
    n = 20000
    u = torch.rand((n, 4), generator=gen, dtype=F64)
    u[:2000] = 0.0  # the box ends
    u[2000:4000] = 1.0
    x = lo + (hi - lo) * u
    s = torch.rand((n, 4), generator=gen, dtype=F64) * 2 - 1
    s[::2] = s[::2].sign()  # perturbations at the extremes
    xh = x + s * (R[0] * x.abs() + A[0])
    ok = xh > (0 if kind == "log" else -1)
    d = (f(xh) - f(x)).abs()
    d = torch.where(ok, d, torch.zeros_like(d))
    worst = d.max(0).values
    assert bool((worst <= bound * (1 + 1e-12)).all()), (worst, bound)
    # and the bound is not loose where the worst point x = lo, x^ = lo(1 - R) - A is in reach
    if kind == "log":
        assert float(worst[1] / bound[1]) > 0.99


def _bound_and_observed(fn, shape, lo, hi, fmt, n=300):
    module, cap, loaded = build(fn, [box(shape, lo, hi)], None, True)
    ba = analyze_bounds(loaded, cap)
    bound = float(certified_errors(ba, [{"*": fmt}], keep_nodes=False).bound[0])
    probe = ErrorProbe(loaded, cast_model(loaded.module, fmt), FORMATS[fmt].torch_dtype)
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for i in range(n):
        x = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=F64)
        if i % 2:
            x = x.to(FORMATS[fmt].torch_dtype).to(F64).clamp(lo, hi)
        worst = max(worst, probe.error((x,))[0])
    return bound, worst


CASES = {
    "logsumexp": (lambda x: torch.log(torch.exp(x).sum(-1)), (1, 64), -5.0, 5.0, 4.0),
    "softplus": (lambda x: torch.log1p(torch.exp(x)) * 3, (1, 64), -6.0, 6.0, 6.0),
    "mish": (lambda x: torch.nn.functional.mish(x), (1, 64), -6.0, 6.0, 50.0),
}


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_log_of_a_relative_error_is_bounded_and_sound(case, fmt):
    fn, shape, lo, hi, ratio = CASES[case]
    bound, observed = _bound_and_observed(fn, shape, lo, hi, fmt)
    # absolute errors alone: the sum's (or exp's) error exceeds its smallest value -> inf
    assert math.isfinite(bound)
    assert 0 < observed <= bound
    assert bound <= ratio * observed, (bound, observed)


class _FmtCtx:
    """fp64 storage and accumulation (u = 2^-53), exact input."""

    F = 1
    u = u_acc = torch.tensor([2.0**-53], dtype=F64)
    he = he_acc = torch.tensor([2.0**-1000], dtype=F64)  # (a stand-in size, representable)

    def b(self, v, nd):
        return v.reshape((self.F,) + (1,) * nd)

    def err(self, name):
        return None


def test_exp_relative_bound_keeps_fp64_unit_roundoff():
    """Regression: R = (1 + r0)(1 + ulps u_acc)(1 + u) - 1 evaluated in float64 lost u when
    u = 2^-53 (1 + 2^-53 rounds to 1): R was 4 u instead of at least 5 u."""
    from curvature_rules._common import ExpError

    x = Interval(torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), torch.float64)
    y = Interval(torch.ones(3, dtype=F64), torch.full((3,), math.e, dtype=F64), torch.float64)
    R, A = ExpError(x, y, lambda a, b: torch.exp(b), 4.0).propagate_rel(_FmtCtx())
    assert float(R.min()) >= 5 * 2.0**-53
    assert float(A.min()) >= 9 * 2.0**-1000  # 4 ulps of a subnormal result (8 he_acc) + he
