"""SCM thresholds (issue 6, DESIGN 4.6): soundness on the rational-head example, exact format
values, strict decoding, declaration, refusals and the per-division report."""

from __future__ import annotations

import copy
import json
import math
import textwrap
from fractions import Fraction

import pytest
import torch

from certifier.errors import ModelFileError, SpecError
from certifier.formats import FORMAT_ORDER, FORMATS
from certifier.loader import load_model
from certifier.pipeline import Options, analyse, run_certify
from certifier.rounding import run_errors
from certifier.scm import (
    FormatGrid,
    ThresholdRefusal,
    decode_rounding,
    design_tau_train,
    next_above,
    parse_rational,
    quotient_error_bound,
    round_up,
    scm_section,
    strict_decode,
    thresholds,
    zeroproofml_export,
)
from certifier.validate import cast_model, flat_outputs

EPS = 0.05
EXAMPLE = "examples/rational_head.py"
RUN_FORMATS = ("fp32", "bf16", "fp16")


@pytest.fixture(scope="module")
def report():
    return run_certify(EXAMPLE, Options(eps=EPS))


@pytest.fixture(scope="module")
def section(report):
    return scm_section(report.bounds, report.uniform, EPS)


@pytest.fixture(scope="module")
def samples(report):
    """10,000 domain inputs (corners first) as one batch, and the fp64 N, D on them."""
    gen = torch.Generator().manual_seed(0)
    xs = torch.cat([x[0] for x in report.loaded.sample_inputs(10_000, gen)])
    ref = copy.deepcopy(report.loaded.module).to(torch.float64).eval()
    with torch.no_grad():
        N, D = flat_outputs(ref(xs))
    return xs, N, D


def _run_in(report, fmt: str, xs: torch.Tensor):
    low = cast_model(report.loaded.module, fmt)
    with torch.no_grad():
        return flat_outputs(low(xs.to(FORMATS[fmt].torch_dtype)))


# ------------------------------------------------------------------ acceptance (10,000 inputs)
@pytest.mark.parametrize("fmt", RUN_FORMATS)
def test_acceptance_sign_and_accuracy(report, section, samples, fmt):
    xs, N, D = samples
    e = section["rational_head"]["formats"][fmt]
    assert e["status"] == "certified"
    Nh, Dh = _run_in(report, fmt, xs)
    assert Nh.dtype == FORMATS[fmt].torch_dtype
    value, bottom, gap = strict_decode(Nh, Dh, e["tau_infer"], e["tau_train"])
    assert value.dtype == Nh.dtype  # the decode division runs in the format
    ad = Dh.double().abs()
    # Sign determinacy: |D^| >= tau_infer  =>  sign(D^) = sign(D in fp64) (and D != 0).
    sure = ad >= e["tau_infer"]
    assert torch.equal(sure, ~bottom)
    assert bool((torch.sign(Dh.double()) == torch.sign(D))[sure].all())
    assert bool((D[sure] != 0).all())
    # Accuracy: |D^| >= tau_train  =>  |N^/D^ - N/D| <= eps (N/D in fp64, N^/D^ in the format).
    decoded = ad >= e["tau_train"]
    assert torch.equal(decoded, ~bottom & ~gap)
    err = (value.double() - N / D).abs()[decoded]
    assert bool(torch.isfinite(err).all())
    assert float(err.max()) <= EPS
    # The certified bound at tau_train is <= eps, and the measured inputs did hit every region.
    assert e["quotient_bound"] <= EPS
    counts = (int(bottom.sum()), int(gap.sum()), int(decoded.sum()))
    assert sum(counts) == 10_000
    assert counts[1] > 0 and counts[2] > 0, counts
    if fmt != "fp32":
        assert counts[0] > 0, counts
    # The deltas are the analysis's bounds: the observed errors of N and D stay below them.
    assert float((Dh.double() - D).abs().max()) <= e["delta_D"]
    assert float((Nh.double() - N).abs().max()) <= e["delta_N"]


def _pole_points(report, n: int = 400) -> torch.Tensor:
    """Inputs on (fp64-close to) the pole set {D = 0}, found by bisection along random segments."""
    ref = copy.deepcopy(report.loaded.module).to(torch.float64).eval()
    g = torch.Generator().manual_seed(1)
    a = torch.rand(4 * n, 2, generator=g, dtype=torch.float64) * 2 - 1
    b = torch.rand(4 * n, 2, generator=g, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        da, db = ref(a)[1], ref(b)[1]
        keep = (torch.sign(da) != torch.sign(db)).reshape(-1)
        a, b, da = a[keep][:n], b[keep][:n], da[keep][:n]
        for _ in range(60):
            m = 0.5 * (a + b)
            dm = ref(m)[1]
            left = torch.sign(dm) == torch.sign(da)
            a = torch.where(left, m, a)
            da = torch.where(left, dm, da)
            b = torch.where(left, b, m)
    # Points on the pole set, and nudged off it by a few format ulps of D.
    t = torch.linspace(-1e-2, 1e-2, 11, dtype=torch.float64)
    d = (b - a)
    d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-300)
    pts = (a.unsqueeze(0) + t.view(-1, 1, 1) * d.unsqueeze(0)).reshape(-1, 2)
    return pts.clamp(-1, 1)


@pytest.mark.parametrize("fmt", RUN_FORMATS)
def test_sign_determinacy_near_the_pole_set(report, section, fmt):
    xs = _pole_points(report)
    ref = copy.deepcopy(report.loaded.module).to(torch.float64).eval()
    with torch.no_grad():
        N, D = ref(xs)
    e = section["rational_head"]["formats"][fmt]
    Nh, Dh = _run_in(report, fmt, xs)
    value, bottom, gap = strict_decode(Nh, Dh, e["tau_infer"], e["tau_train"])
    assert int(bottom.sum()) > 0  # these inputs do reach the bottom region
    sure = ~bottom
    assert bool((torch.sign(Dh.double()) == torch.sign(D))[sure].all())
    dec = sure & ~gap
    if bool(dec.any()):
        assert float((value.double() - N / D).abs()[dec].max()) <= EPS


# ------------------------------------------------------------------ representable thresholds
def test_thresholds_are_format_values_rounded_up(section):
    rh = section["rational_head"]
    assert set(rh["formats"]) == set(FORMAT_ORDER)
    for f, e in rh["formats"].items():
        assert e["status"] == "certified", (f, e)
        st = FORMATS[f].storage
        ti, tt, dN, dD, M = e["tau_infer"], e["tau_train"], e["delta_N"], e["delta_D"], e["M_N"]
        for t in (ti, tt):
            assert math.isfinite(t) and 0 < t <= st.max
            assert torch.tensor(t, dtype=torch.float64).to(st.torch_dtype).double().item() == t, (f, t)
        # tau_infer: the smallest format value strictly above delta_D.
        assert ti > dD and next_above(dD, st) == ti
        g = FormatGrid(st)
        k = g.ceil_index(Fraction(ti))
        assert g.value(k - 1) <= dD
        # tau_train: at least tau_infer; the bound holds at it, fails one format value below.
        assert tt >= ti
        assert e["use_gap"] is (tt > ti)
        r = decode_rounding(FORMATS[f])
        b = quotient_error_bound(tt, dN, dD, M, r)
        assert b is not None and b <= Fraction(EPS)
        k = g.ceil_index(Fraction(tt))
        if tt > ti:
            below = quotient_error_bound(g.value(k - 1), dN, dD, M, r)
            assert below is None or below > Fraction(EPS)
        # Never below DESIGN's closed form (our bound only adds terms to it).
        assert tt >= design_tau_train(dN, dD, M, EPS, st.u) * (1 - 1e-12)


def test_round_up_against_torch():
    g = torch.Generator().manual_seed(0)
    for f in ("fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"):
        fmt = FORMATS[f]
        dt = fmt.torch_dtype
        xs = torch.exp(torch.empty(400, dtype=torch.float64).uniform_(-40, math.log(fmt.max) - 0.01, generator=g))
        for x in xs.tolist():
            r = round_up(x, fmt)
            assert r >= x
            assert torch.tensor(r, dtype=torch.float64).to(dt).double().item() == r
            if f in ("fp32", "bf16", "fp16"):
                below = torch.nextafter(torch.tensor(r, dtype=dt), torch.tensor(0.0, dtype=dt)).double().item()
                assert below < x
        assert round_up(fmt.max, fmt) == fmt.max and round_up(fmt.max * 1.0001, fmt) == math.inf
        assert next_above(0.0, fmt) == fmt.eta  # the smallest subnormal: tau_infer > 0 even when delta_D = 0


def test_use_gap_false_when_equal():
    t = thresholds("fp16", 0.0, 0.25, 0.0, 1e-3)  # N = 0 exactly: every |D^| > delta_D decodes to 0
    assert t.tau_train == t.tau_infer and not t.use_gap
    assert t.zeroproofml() == {"format": "fp16", "tau_infer": 0.25 + 2.0**-12, "tau_train": 0.25 + 2.0**-12, "use_gap": False}
    t = thresholds("fp16", 1e-3, 0.01, 1.0, 1e-2)
    assert t.use_gap and t.tau_train > t.tau_infer


def test_closed_form_agrees_and_fixes_matter():
    # With no underflow and correctly rounded division the exact search lands on the DESIGN
    # closed form rounded up (fp32: accumulation format = storage format).
    dN, dD, M, eps = 2e-7, 7e-6, 0.2, 0.05
    t = thresholds("fp32", dN, dD, M, eps)
    h = FORMATS["fp32"].eta / 2
    assert t.tau_train == round_up(design_tau_train(dN, dD, M, eps - h, FORMATS["fp32"].u), FORMATS["fp32"])
    # Fix 3: a large eps would admit a tau at which N^/D^ overflows fp16; we raise tau.
    t = thresholds("fp16", 0.0, 1e-4, 60000.0, 40.0)
    design = design_tau_train(0.0, 1e-4, 60000.0, 40.0, FORMATS["fp16"].u)
    assert 60000.0 / design > FORMATS["fp16"].max  # the DESIGN tau would decode to inf
    assert (1 + 2**-24) * 60000.0 / t.tau_train <= FORMATS["fp16"].max
    # Fix 2: eps below the underflow error of the division is refused, not answered.
    with pytest.raises(ThresholdRefusal, match="underflow"):
        thresholds("fp16", 0.0, 0.0, 1.0, 2.0**-26)


def test_refusals_are_reasons_not_numbers():
    with pytest.raises(ThresholdRefusal, match="M_N is unbounded"):
        thresholds("fp32", 1e-6, 1e-6, math.inf, 1e-2)
    with pytest.raises(ThresholdRefusal, match="delta_D is unbounded"):
        thresholds("fp32", 1e-6, math.inf, 1.0, 1e-2)
    with pytest.raises(ThresholdRefusal, match="sign of D is never certain"):
        thresholds("fp16", 0.0, 70000.0, 1.0, 1e-2)
    with pytest.raises(ThresholdRefusal, match="reaches eps"):
        thresholds("fp8_e4m3", 100.0, 1.0, 1.0, 1e-3)  # delta_N/tau > eps for every tau <= 448


# ------------------------------------------------------------------ strict_decode
def test_strict_decode_semantics():
    ti, tt = 0.25, 2.0
    D = torch.tensor([0.0, -0.0, 0.2, -0.25, 0.25, 1.0, -1.99, 2.0, -2.0, 8.0, float("nan"), 4.0])
    N = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0, float("nan")])
    v, bot, gap = strict_decode(N, D, ti, tt)
    assert bot.tolist() == [True, True, True, False, False, False, False, False, False, False, True, True]
    assert gap.tolist() == [False, False, False, True, True, True, True, False, False, False, False, False]
    assert bool(torch.isnan(v[bot]).all())
    assert v[~bot].tolist() == (N / D)[~bot].tolist()
    assert not bool((bot & gap).any())
    # No gap when the thresholds are equal.
    _, bot2, gap2 = strict_decode(N, D, ti, ti)
    assert not bool(gap2.any()) and torch.equal(bot2, bot)
    with pytest.raises(ValueError):
        strict_decode(N, D, 1.0, 0.5)
    with pytest.raises(ValueError):
        strict_decode(N, D, float("nan"), 1.0)


def test_strict_decode_compares_exactly_in_low_precision():
    # 0.1 in fp16 is 0.0999755859375; a threshold 0.09999 (not an fp16 value) rounds to it in
    # fp16, but |D| < 0.09999 must still hold: the comparison may not round the threshold down.
    D = torch.tensor([0.1], dtype=torch.float16)
    N = torch.tensor([1.0], dtype=torch.float16)
    v, bot, gap = strict_decode(N, D, 0.09999, 0.5)
    assert bool(bot[0]) and bool(torch.isnan(v[0]))
    v, bot, gap = strict_decode(N, D, 0.0999755859375, 0.5)
    assert not bool(bot[0]) and bool(gap[0]) and v.dtype == torch.float16
    assert v.item() == (N / D).item()


# ------------------------------------------------------------------ the section and the export
def test_section_layout_and_export(report, section):
    assert section["eps"] == EPS
    rh = section["rational_head"]
    assert rh["declared_by"].startswith("rational_head()")
    assert rh["numerator"]["output"] == 0 and rh["denominator"]["output"] == 1
    assert rh["denominator"]["crosses_zero"] is True
    assert rh["refused"] is None
    assert section["divisions"] == []
    # The deltas are the max over elements of the uniform output errors, per format.
    n, d = report.bounds.outputs
    for c, f in enumerate(report.uniform.configs):
        e = rh["formats"][f]
        assert e["delta_N"] == float(report.uniform.output_err[n][c].max())
        assert e["delta_D"] == float(report.uniform.output_err[d][c].max())
        assert e["M_N"] == report.bounds.nodes[n].primary.max_abs()
    zp = section["zeroproofml"]
    assert [z["format"] for z in zp] == list(FORMAT_ORDER)
    assert all(set(z) == {"format", "tau_infer", "tau_train", "use_gap"} for z in zp)
    cert = dict(report.certificate, scm=section)
    doc = zeroproofml_export(cert)
    json.dumps(doc, allow_nan=False)
    assert doc["thresholds"] == zp and doc["refused"] == []
    assert doc["source_sha256"] == report.certificate["model"]["source_sha256"]
    fp16 = next(z for z in doc["thresholds"] if z["format"] == "fp16")
    assert fp16["tau_infer"] == rh["formats"]["fp16"]["tau_infer"]


def test_rational_option_overrides_hook_and_is_checked(report):
    s = scm_section(report.bounds, report.uniform, EPS, rational=(1, 0))  # D/N instead of N/D
    rh = s["rational_head"]
    assert rh["declared_by"] == "--rational" and rh["numerator"]["output"] == 1
    assert rh["formats"]["fp16"]["delta_D"] == scm_section(report.bounds, report.uniform, EPS)["rational_head"]["formats"]["fp16"]["delta_N"]
    with pytest.raises(SpecError, match="out of range"):
        scm_section(report.bounds, report.uniform, EPS, rational=(0, 2))
    assert parse_rational("0, 1") == (0, 1)
    for bad in ("0", "a,b", "1,1", "-1,0", "0,1,2"):
        with pytest.raises(SpecError):
            parse_rational(bad)


# ------------------------------------------------------------------ tmp model files
def _model_file(tmp_path, name: str, body: str) -> str:
    p = tmp_path / f"{name}.py"
    p.write_text(textwrap.dedent(body))
    return str(p)


def _section_for(path: str, eps: float = EPS, rational=None):
    loaded = load_model(path)
    _, ba, _ = analyse(loaded)
    uni = run_errors(ba, [{"*": f} for f in FORMAT_ORDER], keep_nodes=False)
    return loaded, ba, uni, scm_section(ba, uni, eps, rational)


ZERO_D = """
    import torch
    from torch import nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.num = nn.Linear(2, 1)
            self.den = nn.Linear(2, 1)
            with torch.no_grad():
                self.num.weight.copy_(torch.tensor([[0.5, -0.25]]))
                self.num.bias.fill_(0.125)
                self.den.weight.copy_(torch.tensor([[1.0, 0.0]]))  # D = x0: exactly 0 at x0 = 0
                self.den.bias.zero_()

        def forward(self, x):
            return self.num(x), self.den(x)

    def build_model():
        return M()

    def example_inputs():
        return (torch.zeros(1, 2),)

    def input_domain():
        return [(-1.0, 1.0)]

    def rational_head():
        return (0, 1)
"""


def test_exact_zero_denominator_still_gets_positive_tau_infer(tmp_path):
    path = _model_file(tmp_path, "zero_d", ZERO_D)
    loaded, ba, uni, s = _section_for(path)
    rh = s["rational_head"]
    assert rh["denominator"]["range"][0] <= 0 <= rh["denominator"]["range"][1]
    x = torch.tensor([[0.0, 0.3], [0.0, -1.0], [1e-30, 0.5]], dtype=torch.float64)
    for f in FORMAT_ORDER:
        e = rh["formats"][f]
        assert e["status"] == "certified"
        assert e["tau_infer"] > 0 and e["tau_infer"] > e["delta_D"]
        if f in RUN_FORMATS:
            Nh, Dh = _run_in(type("R", (), {"loaded": loaded})(), f, x)
            v, bot, gap = strict_decode(Nh, Dh, e["tau_infer"], e["tau_train"])
            assert bot.reshape(-1).tolist() == [True, True, True]  # D^ = 0 (or tiny) is bottom
            assert bool(torch.isnan(v).all())


UNBOUNDED_N = """
    import torch
    from torch import nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 1)
            self.b = nn.Linear(2, 1)
            self.den = nn.Linear(2, 1)
            with torch.no_grad():
                for l, w in ((self.a, [[1.0, 0.5]]), (self.b, [[0.5, -1.0]]), (self.den, [[0.25, 1.0]])):
                    l.weight.copy_(torch.tensor(w))
                self.a.bias.fill_(2.0)
                self.b.bias.zero_()      # b crosses 0 on the box: a / b has no finite bound
                self.den.bias.fill_(0.5)

        def forward(self, x):
            return self.a(x) / self.b(x), self.den(x)

    def build_model():
        return M()

    def example_inputs():
        return (torch.full((1, 2), 0.5),)

    def input_domain():
        return [(-1.0, 1.0)]

    def rational_head():
        return (0, 1)
"""


def test_unbounded_numerator_is_refused_and_divisions_are_reported(tmp_path):
    path = _model_file(tmp_path, "unbounded_n", UNBOUNDED_N)
    loaded, ba, uni, s = _section_for(path)
    rh = s["rational_head"]
    assert rh["refused"] and "no finite bound" in rh["refused"]
    for f, e in rh["formats"].items():
        assert e == {"status": "refused", "reason": rh["refused"]}
    assert s["zeroproofml"] == []
    json.dumps(s, allow_nan=False)  # no NaN or infinity anywhere
    cert = {"model": {"name": "m", "source_sha256": "x", "weights_sha256": "y"}, "scm": s}
    doc = zeroproofml_export(cert)
    assert doc["thresholds"] == [] and len(doc["refused"]) == len(FORMAT_ORDER)
    # The division a/b inside the graph: reported with per-format thresholds from the
    # node-wise error bounds of its operands.
    (dv,) = s["divisions"]
    node = ba.nodes[dv["node"]]
    assert node.op == "div" and dv["numerator"] == node.producers["self"] and dv["denominator"] == node.producers["other"]
    assert dv["denominator_crosses_zero"] is True
    kept = run_errors(ba, [{"*": f} for f in FORMAT_ORDER], keep_nodes=True)
    M = ba.nodes[dv["numerator"]].primary.max_abs()
    assert dv["M_N"] == M
    for c, f in enumerate(FORMAT_ORDER):
        e = dv["formats"][f]
        assert e["status"] == "certified", (f, e)
        assert e["delta_N"] == kept.node_max[dv["numerator"]][c]
        assert e["delta_D"] == kept.node_max[dv["denominator"]][c]
        t = thresholds(f, e["delta_N"], e["delta_D"], M, EPS)
        assert (e["tau_infer"], e["tau_train"]) == (t.tau_infer, t.tau_train)


def test_bad_hook_and_no_head(tmp_path):
    bad = ZERO_D.replace("return (0, 1)", "return (0, 0)")
    path = _model_file(tmp_path, "bad_hook", bad)
    with pytest.raises(ModelFileError, match="rational_head"):
        _section_for(path)
    plain = ZERO_D.replace("def rational_head():\n        return (0, 1)\n", "")
    path = _model_file(tmp_path, "plain", plain)
    _, ba, uni, s = _section_for(path)
    assert s is None  # no head, no division: no scm section
    assert scm_section(ba, uni, EPS, rational=(0, 1))["rational_head"]["declared_by"] == "--rational"
