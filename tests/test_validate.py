"""The adversarial search of certifier.validate: its grid walk (phase 4) moves one input
element by one spacing of the format at a time, keeps only improvements, and finds larger
errors than the earlier phases alone."""

import math

import pytest
import torch

from certifier.formats import FORMATS
from certifier.loader import load_model
from certifier import validate
from certifier.validate import ErrorProbe, _grid, _grid_walk, cast_model, observe
from conftest import EXAMPLES

F64 = torch.float64


class _Recorder(ErrorProbe):
    """An ErrorProbe that logs, in order, its single evaluations ("single", inputs, error) and
    its batched screenings ("batch", stacked first input, errors)."""

    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.events: list = []

    @property
    def seen(self) -> list:
        return [(x, e) for kind, x, e in self.events if kind == "single"]

    def error(self, xs):
        r = super().error(xs)
        self.events.append(("single", tuple(x.clone() for x in xs), r[0]))
        return r

    def batch_errors(self, stacked):
        r = super().batch_errors(stacked)
        self.events.append(("batch", stacked[0].clone(), None if r is None else r.clone()))
        return r


@pytest.fixture(scope="module")
def mlp():
    return load_model(EXAMPLES / "mlp.py")


@pytest.fixture(scope="module")
def cnn():
    return load_model(EXAMPLES / "cnn.py")


def _check_move(cur, cand, dt, sp, n_moved=(1,)):
    """cand differs from cur in n_moved elements, each by one spacing of dt (or clamped)."""
    d = (cand[0] - cur[0]).reshape(-1)
    moved = torch.nonzero(d).reshape(-1)
    assert moved.numel() in n_moved
    for p in moved.tolist():
        old = cur[0].reshape(-1)[p : p + 1]
        new = float(cand[0].reshape(-1)[p])
        step = float(_grid(old, dt)[0])
        assert sp.lo <= new <= sp.hi
        # one spacing up or down, or up to a bound of the domain
        assert abs(abs(new - float(old)) - step) <= 1e-15 or new in (sp.lo, sp.hi)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_grid_walk_moves_one_element_by_one_spacing(mlp, fmt):
    """The walk one candidate at a time (a short walk, under BATCH_FROM steps): each evaluated input
    is the current one with one element moved by one spacing, kept when the error grows."""
    dt = FORMATS[fmt].torch_dtype
    low = cast_model(mlp.module, fmt)
    probe = _Recorder(mlp, low, dt)
    start = mlp.sample_inputs(1, torch.Generator().manual_seed(1))[0]
    e0, i0, j0 = probe.error(start)
    probe.events.clear()
    err, xs, _, _ = _grid_walk(probe, mlp.inputs, (e0, start, i0, j0), 300, torch.Generator().manual_seed(2), dt, None, 0, 0)
    assert not any(ev[0] == "batch" for ev in probe.events)  # a walk this short does not screen in batches
    assert len(probe.seen) >= 100, "the walk evaluated its steps (moves past the domain's bounds change nothing and are skipped)"
    cur, cur_err = start, e0
    for cand, e in probe.seen:
        _check_move(cur, cand, dt, mlp.inputs[0])
        if e > cur_err:  # kept only when the error grows
            cur, cur_err = cand, e
    assert err == cur_err and torch.equal(xs[0], cur[0])
    assert err >= e0
    # the returned error is the error at the returned input
    assert math.isclose(ErrorProbe(mlp, low, dt).error(xs)[0], err, rel_tol=0, abs_tol=0)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_batched_grid_walk_screens_one_element_moves_and_confirms_them(cnn, fmt, monkeypatch):
    """The batched walk on the CNN: each round's candidates are the current input with one
    element moved by one spacing; the screened errors are the errors each row has alone
    (PyTorch's fp16 / bf16 CPU convolutions round a row the same in a batch; its linear
    layers do not, which the next test covers); an input is taken only after ErrorProbe.error
    confirms a larger error (a union of several improving moves may be taken), and the walk
    returns the error at its input."""
    dt = FORMATS[fmt].torch_dtype
    sp = cnn.inputs[0]
    low = cast_model(cnn.module, fmt)
    monkeypatch.setattr(validate, "BATCH_FROM", 0)
    probe = _Recorder(cnn, low, dt)
    start = (torch.rand(cnn.inputs[0].shape, generator=torch.Generator().manual_seed(1), dtype=F64),)
    e0, i0, j0 = probe.error(start)
    probe.events.clear()
    err, xs, _, _ = _grid_walk(probe, cnn.inputs, (e0, start, i0, j0), 640, torch.Generator().manual_seed(2), dt, None, 0, 0)
    assert probe.batchable, "the CNN batches along dim 0"
    rounds = [ev for ev in probe.events if ev[0] == "batch" and ev[1].shape[0] > 2]
    assert len(rounds) == 10 and probe.count >= 400
    single = ErrorProbe(cnn, low, dt)
    cur, cur_err, best_screened, taken = start, e0, None, 0
    for kind, x, e in probe.events:
        if kind == "batch" and x.shape[0] > 2:
            for r in range(0, x.shape[0], 16):
                _check_move(cur, (x[r : r + 1],), dt, sp)
                assert single.error((x[r : r + 1],))[0] == pytest.approx(float(e[r]), rel=1e-9)
            best_screened = float(e.max())
        elif kind == "single":
            assert best_screened is not None and best_screened > cur_err, "confirmed only after a screened gain"
            _check_move(cur, x, dt, sp, n_moved=range(1, 65))
            # the kernels agree, so a screened gain is a gain (up to the float64 reference's
            # last bits, which a batch may round otherwise)
            assert e >= cur_err * (1 - 1e-9)
            if e > cur_err:
                cur, cur_err, taken = x, e, taken + 1
    assert taken >= 3 and err == cur_err > e0 and torch.equal(xs[0], cur[0])
    assert single.error(xs)[0] == err


def test_walk_falls_back_when_batches_round_otherwise(mlp, monkeypatch):
    """A model whose rows in a batch are not its single runs (fp32 matmuls sum a batch in
    another order; here, more plainly, rows shifted by 0.1 per extra row): after five
    screened errors that ErrorProbe.error does not reproduce, the walk goes on one candidate
    at a time, and it reports the error at its input."""

    class Shifted(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x) + 0.1 * (x.shape[0] - 1)

    monkeypatch.setattr(validate, "BATCH_FROM", 0)
    low = Shifted(cast_model(mlp.module, "fp16"))
    probe = _Recorder(mlp, low, torch.float16)
    start = mlp.sample_inputs(1, torch.Generator().manual_seed(4))[0]
    e0, i0, j0 = probe.error(start)
    err, xs, _, _ = _grid_walk(probe, mlp.inputs, (e0, start, i0, j0), 700, torch.Generator().manual_seed(5), torch.float16, None, 0, 0)
    assert not probe.batchable
    assert sum(1 for ev in probe.events if ev[0] == "batch" and ev[1].shape[0] > 2) == 5  # 5 misses, then serial
    assert sum(1 for ev in probe.events if ev[0] == "single") >= 100
    assert ErrorProbe(mlp, low, torch.float16).error(xs)[0] == err >= e0


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp32"])
def test_grid_walk_finds_larger_errors_than_the_earlier_phases(mlp, fmt):
    """1000 walk steps from the end of the earlier phases raise the MLP's observed error by
    13-44% (measured); an implementation that never moved, or moved by whole units, would
    not."""
    dt = FORMATS[fmt].torch_dtype
    low = cast_model(mlp.module, fmt)
    ob = observe(mlp, low, dt, 40, 40, seed=7)
    probe = ErrorProbe(mlp, low, dt)
    e, i, j = probe.error(ob.worst_input)
    err, _, _, _ = _grid_walk(probe, mlp.inputs, (e, ob.worst_input, i, j), 1000, torch.Generator().manual_seed(3), dt, None, 0, 0)
    assert err > 1.08 * e


def test_observe_gives_the_walk_most_of_a_large_budget(mlp, monkeypatch):
    import certifier.validate as v

    calls = []
    real = v._grid_walk

    def spy(probe, specs, best, steps, *a):
        calls.append(steps)
        return real(probe, specs, best, steps, *a)

    monkeypatch.setattr(v, "_grid_walk", spy)
    low = cast_model(mlp.module, "fp16")
    observe(mlp, low, torch.float16, 10, 40, seed=5)
    assert calls == []  # a small budget stays with the earlier phases
    ob = observe(mlp, low, torch.float16, 10, 600, seed=5)
    assert len(calls) == 1 and 400 <= calls[0] <= 480
    assert ob.evaluations > 10 + 400  # the walk's steps are evaluations
    # and no walk without a known input format (the model rounds its inputs itself)
    calls.clear()
    observe(mlp, cast_model(mlp.module, "fp64"), None, 5, 200, seed=5)
    assert calls == []


def test_smooth_ascent_raises_the_parameter_rounding_error(mlp):
    """Phase 2 for large budgets: the ascent's end points stay in the domain, and the
    deterministic error of the rounded parameters, |q(x) - ref(x)|, is larger at the best of
    them than at the start."""
    from certifier.validate import _quantized_reference, _smooth_ascent

    low = cast_model(mlp.module, "bf16")
    probe = ErrorProbe(mlp, low, torch.bfloat16)
    q = _quantized_reference(probe)
    gen = torch.Generator().manual_seed(3)
    start = mlp.sample_inputs(4, gen)[3]
    sp = mlp.inputs[0]

    def smooth(xs):
        with torch.no_grad():
            return float((q(*xs) - probe.ref(*xs)).abs().max())

    pts = list(_smooth_ascent(probe, q, mlp, start, gen, 90, torch.bfloat16, None, 0, 0))
    assert len(pts) == 9  # 3 starts x (end point + 2 aligned neighbours)
    for xs in pts:
        assert float(xs[0].min()) >= sp.lo and float(xs[0].max()) <= sp.hi
    assert max(smooth(xs) for xs in pts) > 1.5 * smooth(start)


def test_abs_error_counts_the_same_infinity_as_exact():
    from certifier.validate import abs_error

    inf, nan = float("inf"), float("nan")
    c = torch.tensor([1.5, -inf, inf, inf, nan, 2.0], dtype=torch.float16)
    e = torch.tensor([1.0, -inf, inf, -inf, 1.0, nan], dtype=torch.float64)
    assert abs_error(c, e).tolist() == [0.5, 0.0, 0.0, inf, inf, inf]


def test_large_inputs_are_walked_one_candidate_at_a_time(cnn, monkeypatch):
    """A batch is capped at BATCH_ELEMENTS input elements; under 8 rows (an input as large as
    ResNet-50's, whose float64 activations would not fit 64 times) the walk does not batch."""
    monkeypatch.setattr(validate, "BATCH_ELEMENTS", 4 * 784)
    low = cast_model(cnn.module, "fp16")
    probe = _Recorder(cnn, low, torch.float16)
    start = (torch.rand(cnn.inputs[0].shape, generator=torch.Generator().manual_seed(3), dtype=F64),)
    e0, i0, j0 = probe.error(start)
    _grid_walk(probe, cnn.inputs, (e0, start, i0, j0), 2000, torch.Generator().manual_seed(4), torch.float16, None, 0, 0)
    assert probe.batchable  # the model would batch; the walk chose not to
    assert not any(ev[0] == "batch" for ev in probe.events)
    monkeypatch.setattr(validate, "BATCH_ELEMENTS", 16 * 784)  # 16 rows: batches of 16
    probe = _Recorder(cnn, low, torch.float16)
    probe.error(start)
    _grid_walk(probe, cnn.inputs, (e0, start, i0, j0), 2000, torch.Generator().manual_seed(4), torch.float16, None, 0, 0)
    sizes = {ev[1].shape[0] for ev in probe.events if ev[0] == "batch" and ev[1].shape[0] > 2}
    assert sizes and max(sizes) == 16
