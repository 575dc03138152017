"""Rounding-error engine: targeted cases where one error source dominates, so that dropping
that source would make the bound fall below the observed error."""

from pathlib import Path

import pytest
import torch

from certifier.capture import capture
from certifier.interval import Interval
from certifier.loader import InputSpec, LoadedModel
from certifier.rounding import run_errors
from certifier.validate import cast_model, flat_outputs
from certifier.walker import analyze_bounds


def _analyse(model, shape, lo, hi):
    lm = LoadedModel(Path("t.py"), "t", model.eval(), (torch.zeros(shape),), [InputSpec(shape, torch.float32, lo, hi)], "")
    return lm, analyze_bounds(lm, capture(lm))


def test_weight_rounding_is_charged_through_permuted_weights():
    """Linear(1000 -> 1) with w = 1 + 2**-12 (rounds to 1 in fp16) and bias -1000: at x = 1 the
    exact output is 1000 * 2**-12 = 0.244 and fp16 computes 0. Only the weight-rounding term
    of the bound covers that (the accumulation and output terms are ~0.12)."""
    m = torch.nn.Linear(1000, 1)
    with torch.no_grad():
        m.weight.fill_(1 + 2.0**-12)
        m.bias.fill_(-1000.0)
    lm, ba = _analyse(m, (1, 1000), 1.0, 1.0)
    bound = run_errors(ba, [{"*": "fp16"}]).bound[0]
    x = torch.ones(1, 1000, dtype=torch.float64)
    low = cast_model(m, "fp16")
    with torch.no_grad():
        err = float((low(x.half()).double() - m.double()(x)).abs().max())
    assert err > 0.2
    assert err <= bound
    # Regression: the bound must charge the weight cast and the bias cast (u |W| |x| =
    # u |b| = 0.49 each; the input 1 is an integer fp16 holds, so its cast is exact and
    # charged 0); a version that dropped the weight term gives 0.61.
    assert bound >= 2 * 2.0**-11 * 1000


def test_input_rounding_is_charged():
    """y = 3 x on x in [0.1, 0.1]: fp16 rounds 0.1 on the way in (error 2.4e-5, times 3)."""

    class M(torch.nn.Module):
        def forward(self, x):
            return x * 3.0

    lm, ba = _analyse(M(), (1, 4), 0.1, 0.1)
    bound = run_errors(ba, [{"*": "fp16"}]).bound[0]
    x = torch.full((1, 4), 0.1, dtype=torch.float64)
    err = float((M()(x.half()).double() - 3 * x).abs().max())
    assert err > 5e-5 and err <= bound


def test_mixed_assignment_casts_between_layers():
    """fp32 layer feeding an fp16 layer: the activation is rounded on entry to the fp16 layer."""
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    torch.manual_seed(0)
    lm, ba = _analyse(m, (1, 4), -1.0, 1.0)
    mixed = run_errors(ba, [{"0": "fp32", "1": "fp16"}, {"0": "fp32", "1": "fp32"}])
    assert mixed.bound[0] > 10 * mixed.bound[1]
    from certifier.amp import apply_precision
    from certifier.validate import observe

    ob = observe(lm, apply_precision(m, {"0": "fp32", "1": "fp16"}), None, 50, 30, align_dtype=torch.float32)
    assert ob.max_error <= mixed.bound[0]


def test_a_weight_beyond_the_formats_max_forbids_the_format():
    """Regression (counterexample found in review): Linear with one weight 1e5 on inputs in
    [-1e-4, 1e-4]. The output is at most 10.4 in magnitude, but the weight cast to fp16 is inf,
    so fp16 computes inf/NaN. The cast of a *weight* must be checked for overflow like the
    cast of an activation; fp16 was reported certified with a bound of 0.018."""
    m = torch.nn.Linear(4, 2)
    with torch.no_grad():
        m.weight.fill_(1e-3)
        m.weight[0, 0] = 1e5
        m.bias.zero_()
    lm, ba = _analyse(m, (1, 4), -1e-4, 1e-4)
    res = run_errors(ba, [{"*": "fp16"}, {"*": "bf16"}, {"*": "fp32"}])
    x = torch.full((1, 4), 1e-4, dtype=torch.float64)
    with torch.no_grad():
        y16 = cast_model(m, "fp16")(x.half())
    assert not bool(torch.isfinite(y16).all())  # the real run in fp16 fails
    assert res.bound[0] == float("inf") and res.overflow[0] is not None
    assert "cast" in res.overflow[0].reason() and "65504" in res.overflow[0].reason()
    assert res.bound[1] < 1 and res.bound[2] < 1e-3  # bf16 and fp32 hold 1e5: still certified


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2, torch.float64])
def test_finite_absmax_of_a_weight(dtype):
    """The largest finite |w| (checked against the format max on a cast): one aminmax pass,
    an exact -inf/inf mask entry ignored, fp8 weights (no aminmax kernel) handled too."""
    from certifier.rounding import _finite_absmax

    w = torch.tensor([0.5, -3.0, 2.0, 0.0]).to(dtype)
    assert float(_finite_absmax(Interval.point(w))) == 3.0
    if dtype not in (torch.float8_e4m3fn,):  # e4m3fn has no inf
        m = torch.tensor([0.5, -float("inf"), 2.0, -1.5]).to(dtype)
        assert float(_finite_absmax(Interval.point(m))) == 2.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float8_e5m2])
def test_all_finite_weight_check(bad, dtype):
    from certifier.loader import _all_finite

    assert _all_finite(torch.tensor([1.0, -2.0, 0.0]).to(dtype))
    for pos in range(3):
        t = torch.tensor([1.0, -2.0, 0.0])
        t[pos] = bad
        assert not _all_finite(t.to(dtype)), (pos, bad, dtype)


def test_an_unbounded_format_does_not_make_the_others_unbounded():
    """Regression: exp on [0, 12] overflows fp16 (its error is unbounded), followed by a Linear
    (error model through upper32). Analysed together, fp32's bound was inf too because the
    underflow term of upper32 took the max over every configuration's error, inf included.
    Each configuration's bound must not depend on which other configurations share the run,
    and fp32's must still hold for the model run in fp32."""
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(torch.exp(x))

    m = M().eval()
    lm, ba = _analyse(m, (1, 4), 0.0, 12.0)
    both = run_errors(ba, [{"*": "fp32"}, {"*": "fp16"}])
    alone = run_errors(ba, [{"*": "fp32"}])
    assert both.bound[1] == float("inf") and both.overflow[1] is not None
    assert both.bound[0] < 1.0  # finite and small (exp(12) = 1.6e5, u32 = 6e-8)
    # NB: equal up to the float32 summation order of upper32 (sound in any order): BLAS
    # blocks a batch of two configurations differently from one on some CPUs (6e-8 apart)
    assert both.bound[0] == pytest.approx(alone.bound[0], rel=1e-6)
    from certifier.validate import observe

    ob = observe(lm, cast_model(m, "fp32"), torch.float32, 50, 30)
    assert 0 < ob.max_error <= both.bound[0]


def test_upper32_underflow_term_per_finite_entry():
    """upper32's result for rows with finite data is the same whether or not another row
    holds an inf, and it bounds the exact float64 product."""
    from curvature_rules.linear import upper32

    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 5, generator=g, dtype=torch.float64)
    b = torch.rand(5, 4, generator=g, dtype=torch.float64)
    a_inf = a.clone()
    a_inf[1, 0, 2] = float("inf")
    r = upper32(torch.matmul, a, b, 5)
    r_inf = upper32(torch.matmul, a_inf, b, 5)
    assert torch.equal(r_inf[0], r[0])
    assert bool(torch.isinf(r_inf[1, 0]).all()) and torch.equal(r_inf[1, 1:], r[1, 1:])
    assert bool((r >= a @ b).all())


class _Mixed(torch.nn.Module):
    """exp on [0, 12] (fp16 overflows: its error is unbounded), then the error models of
    linear, layer_norm, gelu, softmax, a two-operand bmm, mul, div, sum and conv2d."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.lin = torch.nn.Linear(8, 8)
        self.ln = torch.nn.LayerNorm(8)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(2).eval()

    def forward(self, x):
        h = torch.exp(x) * 1e-4 + torch.arange(8, dtype=x.dtype) * 10.0
        h = torch.nn.functional.gelu(self.ln(self.lin(h)))
        s = torch.softmax(h @ h.transpose(-1, -2) * 0.1, dim=-1)
        a = s @ h
        c = self.bn(self.conv(a.unsqueeze(1)))
        return (c.sum(dim=1) / 4.0 + a * h).sum(dim=-1)


def test_each_configuration_is_bounded_independently_of_the_others():
    """A configuration's bound must not depend on which configurations share its run: an
    unbounded fp16 (overflow) must leave fp64, fp32 and bf16 bounded, with the bounds they
    get when analysed alone (up to the float32 arithmetic of the error pass)."""
    m = _Mixed().eval()
    lm, ba = _analyse(m, (1, 4, 8), 0.0, 12.0)
    fmts = ["fp64", "fp32", "bf16", "fp16"]
    together = run_errors(ba, [{"*": f} for f in fmts])
    assert together.bound[3] == float("inf")
    for i, f in enumerate(fmts[:3]):
        alone = run_errors(ba, [{"*": f}]).bound[0]
        assert alone < float("inf"), f
        assert together.bound[i] == pytest.approx(alone, rel=1e-5), f
    from certifier.formats import FORMATS
    from certifier.validate import observe

    for i, f in ((1, "fp32"), (2, "bf16")):  # and the bounds hold for the model run in f
        ob = observe(lm, cast_model(m, f), FORMATS[f].torch_dtype, 50, 30)
        assert 0 < ob.max_error <= together.bound[i], f


def test_upper32_inf_reaches_through_a_partner_that_flushes_in_float32():
    """An unbounded entry times a positive partner below float32's range (2**-160 flushes to
    0) is unbounded, even with a kernel that skips products with a zero factor."""
    from curvature_rules.linear import upper32

    def skipping(x, y):  # a matmul that treats 0 * inf as 0, as a zero-skipping kernel would
        return torch.nan_to_num(x @ y, nan=0.0) if not bool(torch.isinf(x).any() or torch.isinf(y).any()) else (
            torch.where(x.unsqueeze(-1) == 0, 0.0, x.unsqueeze(-1) * torch.where(y == 0, 0.0, y).unsqueeze(-3))
            .nan_to_num(nan=0.0)
            .sum(-2)
        )

    inf = float("inf")
    a = torch.tensor([[inf, 1.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0**-160], [1.0]], dtype=torch.float64)
    r = upper32(skipping, a, b, 2)
    assert r[0, 0] == inf and r[1, 0] < 2  # the second row never meets the inf
    r = upper32(skipping, b.T, a.T, 2)  # the inf in the second operand
    assert r[0, 0] == inf and r[0, 1] < 2


def test_exact_weight_rounding_is_charged_with_its_signs():
    """run_errors(exact_weights=True) charges a weight's cast as |op(c, dW)| + op(r, |dW|)
    over the input box. Linear(1000 -> 1), w = 1 + 2^-12 (fp16 rounds each to 1: dW = -2^-12,
    all of one sign), x in [0.9, 1.1]: the exact term is 1.1 * 1000 * 2^-12 = 0.269, which
    the run reaches at x = 1.1; u |W| |x| charges 0.537 for it. Against the same layer with
    w = 1 (held exactly: dW = 0), the bound grows by that 0.269; a version without the
    signed center (r |dW| only) would grow by 0.024."""

    def bounds(w):
        m = torch.nn.Linear(1000, 1)
        with torch.no_grad():
            m.weight.fill_(w)
            m.bias.fill_(-1000.0)
        lm, ba = _analyse(m, (1, 1000), 0.9, 1.1)
        return m, run_errors(ba, [{"*": "fp16"}], exact_weights=True).bound[0], run_errors(ba, [{"*": "fp16"}]).bound[0]

    m, exact, plain = bounds(1 + 2.0**-12)
    _, exact1, _ = bounds(1.0)
    assert 1.1 * 1000 * 2.0**-12 <= exact - exact1 <= 1.1 * 1000 * 2.0**-12 + 1e-3
    low = cast_model(m, "fp16")
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    xs = [torch.full((1, 1000), 1.1, dtype=torch.float64), torch.full((1, 1000), 0.9, dtype=torch.float64)]
    xs += [0.9 + 0.2 * torch.rand((1, 1000), generator=g, dtype=torch.float64) for _ in range(20)]
    with torch.no_grad():
        for x in xs:
            worst = max(worst, float((low(x.half()).double() - m.double()(x)).abs().max()))
    assert worst > 0.26
    assert worst <= exact < plain
    assert plain - exact > 0.2  # the weight term shrank from 0.537 toward 0.269


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
def test_exact_parameter_rounding_in_conv_and_batch_norm_holds(fmt):
    """conv -> batch norm (eval, non-trivial statistics) over [0, 1]: the bound with the
    parameters' exact roundings holds on random inputs and the box's corners, and is below
    the bound with u |W| |x| for every parameter."""
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        bn = m[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.3, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    lm, ba = _analyse(m, (1, 2, 6, 6), 0.0, 1.0)
    exact = run_errors(ba, [{"*": fmt}], exact_weights=True).bound[0]
    plain = run_errors(ba, [{"*": fmt}]).bound[0]
    assert exact < plain
    low = cast_model(m, fmt)
    dt = torch.bfloat16 if fmt == "bf16" else torch.float16
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand((1, 2, 6, 6), generator=g, dtype=torch.float64) for _ in range(200)]
    xs += [torch.zeros((1, 2, 6, 6), dtype=torch.float64), torch.ones((1, 2, 6, 6), dtype=torch.float64)]
    xs += [(torch.rand((1, 2, 6, 6), generator=g) > 0.5).to(torch.float64) for _ in range(50)]
    worst = 0.0
    with torch.no_grad():
        for x in xs:
            worst = max(worst, float((low(x.to(dt)).double() - m.double()(x)).abs().max()))
    assert 0 < worst <= exact
