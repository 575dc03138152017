"""Storage and cast rounding bounded by the binade of the magnitude (certifier.formats.binade_scale).

Round to nearest errs by at most ``u 2^E`` on a value in ``[2^E, 2^(E+1))``; over ``|v| <= M``
the bound is ``u B(M) + eta/2`` with ``B(M) = 2^floor(log2 M)`` (``M / 2`` when M is a power
of two held exactly), up to 2x below ``u M``.
"""

from __future__ import annotations

import math

import pytest
import torch

from certifier.formats import FORMATS, binade_scale, cast_error

F64 = torch.float64
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def _worst_below(M: torch.Tensor, fmt: str) -> torch.Tensor:
    """Values at most M that round by the most: the largest midpoint between neighbours of
    the format in M's binade, and the midpoint just under that binade's bottom (ties: each
    rounds by half its spacing), with M itself."""
    p = FORMATS[fmt].p
    mant, ex = torch.frexp(M)
    E = (ex - 1).to(F64)  # 2^E <= M < 2^(E+1)
    base = torch.exp2(E)
    sp = torch.exp2(E + 1 - p)
    k = torch.floor((M - base) / sp - 0.5)
    m1 = torch.where(k >= 0, base + (k + 0.5) * sp, base)
    m2 = base - torch.exp2(E - p - 1)
    return torch.stack([m1, m2, M]).clamp(max=M)


@pytest.mark.parametrize("fmt", list(DTYPES))
def test_the_binade_bound_holds_on_sampled_and_worst_values(fmt):
    f = FORMATS[fmt]
    g = torch.Generator().manual_seed(1)
    hi = min(f.max, 1e4)
    # random bounds over many binades, exact powers of two, and values just under / over them
    M = torch.exp(torch.empty(4000, dtype=F64).uniform_(-6.0, float(torch.log(torch.tensor(hi))), generator=g))
    p2 = torch.exp2(torch.arange(-6, 13, dtype=F64))
    p2 = p2[p2 <= hi]
    M = torch.cat([M, p2, p2 * (1 - 2.0**-30), p2 * (1 + 2.0**-30), p2 * 1.5])
    for exact in (True, False):
        # float64 values cast by PyTorch (through fp32 below it: cast_error's extra term)
        bound = cast_error(M, f.u, f.eta / 2, exact=exact)
        assert bool((binade_scale(M, exact=exact) <= M).all())
        frac = torch.rand((64, M.numel()), dtype=F64, generator=g)
        v = torch.cat([frac * M, _worst_below(M, fmt)])
        err = (v.to(DTYPES[fmt]).to(F64) - v).abs()
        assert bool((err <= bound).all()), float((err - bound).max())


def test_the_binade_bound_is_the_largest_rounding_in_it():
    """Sharp: 1 + 1.5 ulp in bf16 is below 1.5 and rounds by u = 2^-8; a bound of u M / 2
    (or any 2^floor(log2 M) - 1 off by one binade) would miss it."""
    u = FORMATS["bf16"].u
    v = torch.tensor([1.0 + 1.5 * 2.0**-7], dtype=F64)
    err = float((v.to(torch.bfloat16).to(F64) - v).abs()[0])
    assert err == u
    assert float(binade_scale(torch.tensor([1.5], dtype=F64))[0]) * u == err
    # below a power of two held exactly, the binade under it
    assert float(binade_scale(torch.tensor([2.0], dtype=F64), exact=True)[0]) == 1.0
    # a computed sum may have rounded down onto 2.0: not halved
    assert float(binade_scale(torch.tensor([2.0], dtype=F64))[0]) == 2.0
    assert float(binade_scale(torch.tensor([1.999], dtype=F64))[0]) == 1.0
    # nor one that rounded down to just under it: a float64 sum of 10^5 terms may be 2^-36
    # low (all of a dot product's worst case), and the true bound then lies above 2.0
    M = 2.0 * (1 - 2.0**-36)
    assert float(binade_scale(torch.tensor([M], dtype=F64))[0]) == M
    assert float(binade_scale(torch.tensor([2.0 * (1 - 2.0**-36)], dtype=F64), exact=True)[0]) == 1.0
    z = binade_scale(torch.tensor([0.0, float("inf")], dtype=F64))
    assert float(z[0]) == 0.0 and z[1] == float("inf")


def _binade_reference(M: float, exact: bool) -> float:
    """B(M) by the definition, with Python floats: the largest power of two at most m (half
    of m when m is one), m = M raised by 2^-30 unless exact, never above M."""
    if not (math.isfinite(M) and M > 0):
        return M
    m = M if exact else M * (1 + 2.0**-30)
    if math.isinf(m):
        return M
    mant, ex = math.frexp(m)
    B = math.ldexp(1.0, ex - 1)
    if mant == 0.5:
        B /= 2
    if B < 2.0**-1022:
        return 0.0  # float64 subnormals: far below every format's normal range (eta/2)
    return min(B, M)


def test_binade_scale_matches_its_definition_over_all_of_float64():
    """The bit-level implementation against the definition: random magnitudes over every
    float64 binade, powers of two and their neighbours, subnormals, zero, infinity and NaN,
    with and without the 2^-30 slack, in a contiguous and an expanded (stride 0) tensor."""
    g = torch.Generator().manual_seed(3)
    e = torch.randint(-1074, 1024, (5000,), generator=g).to(F64)
    M = torch.rand(5000, dtype=F64, generator=g).add_(1.0) * torch.exp2(e - 1)
    p2 = torch.exp2(torch.arange(-1074, 1024, dtype=F64))
    M = torch.cat([M, p2, p2 * (1 - 2.0**-52), p2 * (1 - 2.0**-31), p2 * (1 + 2.0**-52), torch.tensor([0.0, float("inf"), float("nan"), 5e-324, 1.7976931348623157e308], dtype=F64)])
    M = M[torch.isnan(M) | (M >= 0)]
    for exact in (True, False):
        got = binade_scale(M, exact=exact)
        want = torch.tensor([_binade_reference(float(v), exact) for v in M], dtype=F64)
        assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0)), (exact, M[got.nan_to_num(-1.0) != want.nan_to_num(-1.0)][:5])
        row = M[:7].clone()
        assert torch.equal(binade_scale(row.unsqueeze(0).expand(3, 7), exact=exact), binade_scale(row, exact=exact).expand(3, 7))
        assert torch.equal(M[:7], row)  # the argument is not written


def test_a_float64_value_cast_by_pytorch_rounds_twice():
    """float64 -> fp16 goes through fp32 in PyTorch: 823.25002 becomes the fp32 tie 823.25,
    then 823.0, off by more than fp16's half spacing 0.25; cast_error allows for it."""
    v = torch.tensor([823.2500222637643], dtype=F64)
    err = float((v.to(torch.float16).to(F64) - v).abs()[0])
    f = FORMATS["fp16"]
    M = torch.tensor([842.6], dtype=F64)
    assert err > float(f.u * binade_scale(M)[0] + f.eta / 2)
    assert err <= float(cast_error(M, f.u, f.eta / 2)[0])
    # fp32 itself rounds once from float64: no extra term
    assert float(cast_error(M, FORMATS["fp32"].u, 0.0)[0]) == FORMATS["fp32"].u * 512


def test_input_casts_and_storage_are_charged_by_the_binade():
    """The MLP example's inputs lie in [-1, 1]: cast into bf16 they err by at most 2^-9, not
    u = 2^-8. The forward bound drops against the linear charges (rounding._Ctx.linear), and
    stays above the observed error."""
    from certifier.capture import capture
    from certifier.loader import load_model
    from certifier.rounding import _Ctx, run_errors
    from certifier.validate import cast_model, observe
    from pathlib import Path

    lm = load_model(Path(__file__).resolve().parents[1] / "examples" / "mlp.py")
    cap = capture(lm)
    from certifier.walker import analyze_bounds

    ba = analyze_bounds(lm, cap)
    cfg = [{"*": "bf16"}, {"*": "fp16"}]
    new = run_errors(ba, cfg).bound
    try:
        _Ctx.linear = True
        old = run_errors(ba, cfg).bound
    finally:
        _Ctx.linear = False
    for b_new, b_old in zip(new, old):
        assert b_new < 0.9 * b_old, (b_new, b_old)
    ob = observe(lm, cast_model(lm.module, "bf16"), torch.bfloat16, 20, 60, seed=0)
    assert ob.max_error <= new[0]
