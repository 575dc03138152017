"""The shared rule building blocks of curvature_rules/_common.py, checked directly: the
helpers' edge cases, and the elementwise error model and Lipschitz bound by sampling (the
rule suites exercise them through every elementwise rule; here a wrong helper is caught on
its own)."""

import math

import pytest
import torch

from certifier.interval import INF, Interval
from curvature_rules._common import (
    ElementwiseError,
    exact_infinite,
    finite_max,
    fmag,
    one_input_result,
    pad_left,
    safe_mul,
)
from curvature_rules.registry import RuleInput

F64 = torch.float64


class _Ctx:
    """The part of ErrorContext the exact-propagation path reads."""

    def __init__(self, e):
        self.F = e.shape[0]
        self._e = e

    def err(self, name):
        return self._e


def _tanh_dsup(lo, hi):
    # sup |tanh'| = 1 - tanh(m)^2 at the point of [lo, hi] nearest 0
    m = torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(lo.abs(), hi.abs()))
    return 1 - torch.tanh(m) ** 2


def test_safe_mul_counts_zero_times_inf_as_zero():
    a = torch.tensor([0.0, 2.0, INF, 3.0], dtype=F64)
    b = torch.tensor([INF, 4.0, 0.0, INF], dtype=F64)
    assert safe_mul(a, b).tolist() == [0.0, 8.0, 0.0, INF]


def test_finite_max_edge_cases():
    assert finite_max(torch.empty(0, dtype=F64)) == 0.0
    assert finite_max(torch.tensor([1.0, 5.0, -2.0], dtype=F64)) == 5.0
    assert finite_max(torch.tensor([1.0, float("nan")], dtype=F64)) == INF


def test_pad_left_inserts_broadcast_dims_after_the_config_dim():
    t = torch.arange(6, dtype=F64).reshape(2, 3)  # F = 2, shape (3,)
    p = pad_left(t, 3)
    assert p.shape == (2, 1, 1, 3) and torch.equal(p[:, 0, 0], t)
    assert pad_left(t, 1) is t


def test_exact_infinite_and_fmag_treat_a_fixed_mask_as_exact():
    bounded = Interval(torch.tensor([-1.0, 2.0], dtype=F64), torch.tensor([1.0, 3.0], dtype=F64), torch.float32)
    assert exact_infinite(bounded) is None
    assert fmag(bounded).tolist() == [1.0, 3.0]
    masked = Interval(torch.tensor([-INF, -1.0, -INF], dtype=F64), torch.tensor([-INF, 4.0, 2.0], dtype=F64), torch.float32)
    assert exact_infinite(masked).tolist() == [True, False, False]
    # the fixed -inf counts 0; an element that may be -inf or finite keeps its infinite magnitude
    assert fmag(masked).tolist() == [0.0, 4.0, INF]


@pytest.mark.parametrize("use_d2max", [False, True])
def test_elementwise_error_propagation_bounds_sampled_perturbations(use_d2max):
    """|tanh(x + d) - tanh(x)| <= propagated bound for x in the box and |d| <= e."""
    gen = torch.Generator().manual_seed(0)
    lo = torch.tensor([-3.0, -0.5, 0.2, 1.5], dtype=F64)
    hi = torch.tensor([-1.0, 0.5, 0.9, 4.0], dtype=F64)
    x = Interval(lo, hi, torch.float32)
    y = Interval(torch.tanh(lo), torch.tanh(hi), torch.float32)
    e = torch.tensor([[1e-3, 1e-2, 0.3, 2.0], [0.0, 1e-6, 1.0, 1e-4]], dtype=F64)  # F = 2
    # |tanh''| <= 4 / (3 sqrt 3) ~= 0.7698
    em = ElementwiseError(x, y, _tanh_dsup, ulps=0.0, exact=True, d2max=0.7699 if use_d2max else None)
    bound = em.propagate(_Ctx(e))
    n = 4000
    xs = lo + (hi - lo) * torch.rand(n, 4, generator=gen, dtype=F64)
    xs[:2] = torch.stack([lo, hi])  # corners
    for c in range(2):
        d = e[c] * (2 * torch.rand(n, 4, generator=gen, dtype=F64) - 1)
        d[-2:] = torch.stack([e[c], -e[c]])
        obs = (torch.tanh(xs + d) - torch.tanh(xs)).abs().amax(0)
        assert bool((obs <= bound[c] * (1 + 1e-12)).all()), (obs, bound[c])
    # and it is not vacuous: within 3x of the sampled worst case on the small perturbations
    obs0 = (torch.tanh(lo[1] + e[0, 1]) - torch.tanh(lo[1])).abs()
    assert float(bound[0, 1]) < 3 * float(obs0) + 1e-15


def test_wrong_d2max_is_caught_by_sampling():
    """The sampling above can fail: an under-stated |f''| bound gives a bound below the
    observed perturbation when e is large."""
    lo = torch.tensor([0.0], dtype=F64)
    hi = torch.tensor([0.0], dtype=F64)
    x = Interval(lo, hi, torch.float32)
    y = Interval(torch.tanh(lo), torch.tanh(hi), torch.float32)
    e = torch.tensor([[2.0]], dtype=F64)
    wrong = ElementwiseError(x, y, _tanh_dsup, ulps=0.0, exact=True, d2max=-0.9)  # deliberately wrong
    b = float(wrong.propagate(_Ctx(e))[0, 0])
    assert math.tanh(2.0) > b


def test_one_input_result_lipschitz_holds_by_sampling():
    gen = torch.Generator().manual_seed(1)
    lo = torch.tensor([-2.0, 0.5], dtype=F64)
    hi = torch.tensor([1.0, 3.0], dtype=F64)
    inp = RuleInput(node=None, op=torch.ops.aten.tanh.default, args={"self": Interval(lo, hi, torch.float32)},
                    out_shapes=((2,),), out_dtypes=(torch.float32,))
    res = one_input_result(inp, Interval(torch.tanh(lo), torch.tanh(hi), torch.float32), _tanh_dsup, curvature=0.3849, ulps=4.0)
    L = res.lipschitz["self"]
    a = lo + (hi - lo) * torch.rand(5000, 2, generator=gen, dtype=F64)
    b = lo + (hi - lo) * torch.rand(5000, 2, generator=gen, dtype=F64)
    num = (torch.tanh(a) - torch.tanh(b)).abs().amax(1)
    den = (a - b).abs().amax(1)
    assert bool((num <= L * den * (1 + 1e-12)).all())
    assert L == pytest.approx(1.0)  # tanh' reaches 1 at 0, inside the first element's interval
