"""Running a model in a format and measuring its error against float64 (DESIGN 7).

"Run in a format" means what ``model.to(dtype)`` does: parameters, buffers and float inputs
are cast to the format and every op runs in it (PyTorch's CPU kernels accumulate low-precision
matmuls and reductions in fp32, which is the arithmetic model the bounds assume). For a mixed
assignment, :func:`certifier.amp.apply_precision` builds the model.

Observed error = max over output elements of ``|run(x) - run_fp64(x)|``, on random inputs from
the domain (corners included) and under an adversarial search:

1. *rounding-aligned inputs*: from the worst input so far, each float input element is moved
   next to the midpoint between two neighbouring values of the format, on the side that
   makes its rounding error take the sign of the output's gradient (this attains the input
   rounding term of the bound for a linear first layer);
2. *quantization-aligned ascent*: the low-precision model's parameters are rounded values, so
   the model in float64 *with those rounded parameters* differs from the exact one by a
   deterministic, differentiable amount; sign-gradient ascent on that difference at the worst
   output element drives float inputs to where parameter rounding errors add up (then step 1
   aligns the input rounding there too). With a budget of more than 40 steps (float inputs,
   a known input format, and parameters whose rounding makes at least a tenth of the error
   at the worst input so far: not fp32, whose parameters are already fp32) a tenth of it
   goes to a longer version, :func:`_smooth_ascent`:
   30 iterations with a shrinking step per start, from the worst input and random starts,
   cycling over (output element, sign) targets, each end point dithered by 5% of the
   domain and rounding-aligned. On the CNN example (5000 steps, seeds 0-2) it raises the
   mean bf16 error found from 2.06e-3 to 2.53e-3; fp16 is 3.09e-4 without it and 2.99e-4
   with it (within the seeds' spread, 2.9-3.3e-4);
3. *hill climbing*: random perturbations with a shrinking step (random token substitutions for
   id inputs), kept when the error grows;
4. *grid walk* (float inputs, when the format the inputs are rounded to is known; it takes
   the larger part of a budget of more than 40 steps): first-improvement hill climbing in
   which one step moves one random input element by one spacing of that format, up or down.
   The input's own rounding error keeps its aligned sign (the element stays on the same
   side of a midpoint), while every rounding inside the model sees a new operand. Those
   roundings are deterministic but chaotic functions of the input, each depending on a few
   elements, so single-element moves can line their signs up one at a time: on the CNN
   example, 30000 steps (45 s one at a time) raise the fp16 error found from 2.1e-4 to
   3.6e-4, and 20000 raise bf16's from 1.4e-3 to 3.1e-3. Where the model in the format
   computes a row of a batch exactly as it computes that row alone (the CNN's fp16 / bf16
   convolutions), or nearly so (fp16 linear layers, whose batched kernel sums in another
   order than at batch size 1: the last rounding differs now and then), 64 moves are
   screened in one batched evaluation (with a warm cache, each costs about 0.4 of a single
   run on the CNN, 0.17 on the MLP in bf16, 0.02 emulated in fp8), and the best move, or
   the union of all moves that raised the error, is kept once a single evaluation confirms
   it (:func:`_grid_walk`); a step is still one candidate evaluated, so this is for walks
   of 2000 steps or more (a short walk keeps its first-improvement moves), and for inputs
   of at most 8192 elements (a batch holds 65536). Five screened errors in a row that a single evaluation does not
   reproduce (fp32, whose errors the batched matmuls' other order changes entirely) switch
   the walk back to one move at a time. Only errors of single evaluations are reported.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from certifier.formats import FORMATS
from certifier.loader import LoadedModel

F64 = torch.float64


def flat_outputs(out: object) -> list[torch.Tensor]:
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    if not leaves and hasattr(out, "to_tuple"):
        leaves = list(out.to_tuple())  # type: ignore[union-attr]
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.dtype.is_floating_point]


def runnable(fmt: str) -> bool:
    f = FORMATS[fmt]
    return f.torch_dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16) and not f.compute_only


def cast_model(model: torch.nn.Module, fmt: str) -> torch.nn.Module:
    m = copy.deepcopy(model)
    return m.to(FORMATS[fmt].torch_dtype).eval()


def cast_inputs(xs: tuple[torch.Tensor, ...], dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    if dtype is None:
        return xs
    return tuple(x.to(dtype) if x.dtype.is_floating_point else x for x in xs)


@dataclass
class Observed:
    max_error: float
    worst_input: tuple[torch.Tensor, ...] | None
    evaluations: int
    random_max: float
    adversarial_max: float


def abs_error(computed: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Elementwise |computed - exact| in float64: 0 where they are equal (the same infinity
    included: an exactly infinite element, such as a masked logit, has no error), inf where
    either is NaN or they differ by an infinity."""
    c, e = computed.to(F64), exact.to(F64)
    d = (c - e).abs()
    d = torch.where(c == e, torch.zeros_like(d), d)
    return torch.where(torch.isnan(d), torch.full_like(d, math.inf), d)


class ErrorProbe:
    """Evaluates |model_in_format(x) - model_fp64(x)| for inputs x (float inputs in fp64)."""

    def __init__(self, loaded: LoadedModel, low: torch.nn.Module, in_dtype: torch.dtype | None) -> None:
        self.loaded = loaded
        self.low = low
        self.in_dtype = in_dtype
        self.ref = copy.deepcopy(loaded.module).to(F64).eval()
        self.count = 0
        self.batchable = True
        self._shapes: list[tuple[int, ...]] | None = None

    def outputs(self, xs):
        with torch.no_grad():
            ref = flat_outputs(self.ref(*xs))
            low = flat_outputs(self.low(*cast_inputs(xs, self.in_dtype)))
        return ref, low

    def error(self, xs) -> tuple[float, int, int]:
        """(max error, output index, flat element index)."""
        self.count += 1
        ref, low = self.outputs(xs)
        if self._shapes is None:
            self._shapes = [tuple(t.shape) for t in ref]
            if [tuple(t.shape) for t in low] != self._shapes or any(len(t) == 0 or t[0] != 1 for t in self._shapes):
                self.batchable = False
        best, bi, bj = 0.0, 0, 0
        for i, (r, l) in enumerate(zip(ref, low)):
            d = abs_error(l, r).reshape(-1)
            if d.numel() == 0:
                continue
            j = int(torch.argmax(d))
            if float(d[j]) > best:
                best, bi, bj = float(d[j]), i, j
        return best, bi, bj

    def batch_errors(self, stacked: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """The max error of each row of a batch of inputs stacked along dim 0, from one
        evaluation: a screening for the search, whose chosen input is evaluated again by
        :meth:`error` before anything is reported. None (and no later tries) where the model
        does not batch that way: an output without a leading dim of 1 at a single input (seen
        by :meth:`error`), a failure, or outputs that do not come back with one row each."""
        if not self.batchable or self._shapes is None:
            return None
        b = int(stacked[0].shape[0])
        try:
            ref, low = self.outputs(stacked)
        except Exception:  # noqa: BLE001 - any failure only means: search one input at a time
            self.batchable = False
            return None
        want = [(b, *sh[1:]) for sh in self._shapes]
        if [tuple(t.shape) for t in ref] != want or [tuple(t.shape) for t in low] != want:
            self.batchable = False
            return None
        self.count += b
        worst = torch.zeros(b, dtype=F64)
        for r, l in zip(ref, low):
            if r[0].numel():
                worst = torch.maximum(worst, abs_error(l, r).reshape(b, -1).max(1).values)
        return worst

    def gradient(self, xs, out_i: int, elem: int) -> list[torch.Tensor | None]:
        xs_g = [x.clone().requires_grad_(True) if x.dtype.is_floating_point else x for x in xs]
        out = flat_outputs(self.ref(*xs_g))[out_i].reshape(-1)[elem]
        grads = torch.autograd.grad(out, [x for x in xs_g if x.requires_grad], allow_unused=True)
        it = iter(grads)
        return [next(it) if x.dtype.is_floating_point else None for x in xs]


def _neighbours(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b): the format values just below/above x (float64 tensors)."""
    r = x.to(dtype).to(F64)
    up = torch.nextafter(x.to(dtype), torch.tensor(math.inf, dtype=dtype)).to(F64)
    dn = torch.nextafter(x.to(dtype), torch.tensor(-math.inf, dtype=dtype)).to(F64)
    a = torch.where(r <= x, r, dn)
    b = torch.where(r <= x, up, r)
    return a, b


def _format_neighbours(x: torch.Tensor, dtype: torch.dtype | str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_neighbours` for a torch dtype, certifier.emulate's for a format name."""
    if isinstance(dtype, str):
        from certifier.emulate import neighbours

        return neighbours(x, dtype)
    return _neighbours(x, dtype)


def rounding_aligned(x: torch.Tensor, g: torch.Tensor, dtype: torch.dtype | str, lo: float, hi: float, sign: float) -> torch.Tensor:
    """Move every element next to a rounding midpoint so that its rounding error in ``dtype``
    (a torch dtype, or a format name for the emulated formats) is about half an ulp with the
    sign of ``sign * g``."""
    if dtype in (torch.float16, torch.bfloat16, torch.float32) or isinstance(dtype, str):
        a, b = _format_neighbours(x, dtype)
        mid = 0.5 * (a + b)
        eps = (b - a) * 1e-3
        want_up = (sign * g) > 0
        xn = torch.where(want_up, mid + eps, mid - eps)  # just above mid rounds up: error > 0
        xn = torch.where(g == 0, x, xn)
        return xn.clamp(lo, hi)
    return x


def observe(
    loaded: LoadedModel,
    low: torch.nn.Module,
    in_dtype: torch.dtype | None,
    n_random: int,
    adv_steps: int,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    align_dtype: torch.dtype | None = None,
) -> Observed:
    """Max observed error over random and adversarial inputs.

    ``in_dtype``: float inputs are cast to it before the low-precision run (None: passed in
    float64, the model rounds them itself); ``align_dtype``: the format the model rounds its
    inputs to, for the rounding-aligned search (defaults to ``in_dtype``)."""
    gen = torch.Generator().manual_seed(seed)
    probe = ErrorProbe(loaded, low, in_dtype)
    best = (-1.0, None, 0, 0)
    total = n_random + adv_steps
    for k, xs in enumerate(loaded.sample_inputs(n_random, gen)):
        err, i, j = probe.error(xs)
        if err > best[0]:
            best = (err, xs, i, j)
        if on_step:
            on_step(k + 1, total)
    random_max = best[0]
    if adv_steps > 0 and best[1] is not None:
        best = _adversarial(probe, loaded, best, adv_steps, gen, align_dtype or in_dtype, on_step, n_random, total)
    return Observed(max(best[0], 0.0), best[1], probe.count, random_max, best[0])


def _quantized_reference(probe: ErrorProbe) -> torch.nn.Module:
    """The float64 model with the low-precision model's (rounded) parameters and buffers."""
    q = copy.deepcopy(probe.ref)
    low = dict(probe.low.named_parameters())
    low.update(dict(probe.low.named_buffers()))
    with torch.no_grad():
        for name, t in list(q.named_parameters()) + list(q.named_buffers()):
            if t.dtype.is_floating_point and name in low:
                t.copy_(low[name].detach().to(F64))
    return q


def _quant_ascent(probe, loaded, start, gen, steps: int, align_dtype):
    """Sign-gradient ascent on |q(x) - ref(x)| at one output element (float inputs only)."""
    specs = loaded.inputs
    if not any(sp.is_float for sp in specs) or steps <= 0:
        return None
    q = _quantized_reference(probe)
    xs = tuple(x.clone() for x in start)
    with torch.no_grad():
        d0 = torch.cat([(a - b).reshape(-1) for a, b in zip(flat_outputs(q(*xs)), flat_outputs(probe.ref(*xs)))])
    if d0.numel() == 0:
        return None
    j = int(d0.abs().argmax())
    sgn = 1.0 if float(d0[j]) >= 0 else -1.0
    for _ in range(steps):
        xg = [x.clone().requires_grad_(True) if sp.is_float else x for x, sp in zip(xs, specs)]
        d = torch.cat([(a - b).reshape(-1) for a, b in zip(flat_outputs(q(*xg)), flat_outputs(probe.ref(*xg)))])
        grads = torch.autograd.grad(sgn * d[j], [x for x in xg if x.requires_grad], allow_unused=True)
        it = iter(grads)
        new = []
        for x, sp in zip(xg, specs):
            if sp.is_float:
                g = next(it)
                g = torch.zeros_like(x) if g is None else g
                new.append((x.detach() + 0.25 * (sp.hi - sp.lo) * g.sign()).clamp(sp.lo, sp.hi))
            else:
                new.append(x)
        xs = tuple(new)
    return xs


def _smooth_share(probe, q, xs) -> float:
    """max |q(x) - ref(x)| at xs: the part of the error the parameters' rounding makes (0 when
    the parameters are already in the format, as in fp32 and tf32)."""
    try:
        with torch.no_grad():
            d = [(a - b).abs().max() for a, b in zip(flat_outputs(q(*xs)), flat_outputs(probe.ref(*xs))) if a.numel()]
        return float(max(d)) if d else 0.0
    except RuntimeError:
        return 0.0


def _smooth_ascent(probe, q, loaded, start, gen, budget: int, align_dtype, on_step, done: int, total: int):
    """Phase 2 for a large budget: projected sign-gradient ascent, with a shrinking step, on
    one output element of q(x) - ref(x) (q: float64 with the rounded parameters), from the
    worst input and from random starts, cycling over (element, sign) targets: every element
    of a small output, else the 8 largest at the worst input. Yields each end point and its
    two rounding-aligned neighbours (the input roundings' signs set to either sign of the
    target's gradient). ``budget`` ascent iterations in all; ``q`` is
    :func:`_quantized_reference`."""
    specs = loaded.inputs

    def diff(xs):
        return torch.cat([(a - b).reshape(-1) for a, b in zip(flat_outputs(q(*xs)), flat_outputs(probe.ref(*xs)))])

    with torch.no_grad():
        d0 = diff(start)
    if d0.numel() == 0:
        return
    order = torch.argsort(d0.abs(), descending=True)[: d0.numel() if d0.numel() <= 16 else 8].tolist()
    targets = [(j, s) for j in order for s in ((1.0, -1.0) if float(d0[j]) >= 0 else (-1.0, 1.0))]
    n_it = 30
    restarts = max(1, budget // n_it)
    fresh = loaded.sample_inputs(restarts + 3, gen)[3:]
    it_done = 0
    for r in range(restarts):
        j, sgn = targets[r % len(targets)]
        xs = tuple(x.clone() for x in (start if r == 0 else fresh[r - 1]))
        step = 0.2
        for _ in range(n_it):
            xg = [x.clone().requires_grad_(True) if sp.is_float else x for x, sp in zip(xs, specs)]
            it = iter(torch.autograd.grad(sgn * diff(xg)[j], [x for x in xg if x.requires_grad], allow_unused=True))
            new = []
            for x, sp in zip(xg, specs):
                if sp.is_float:
                    g = next(it)
                    g = torch.zeros_like(x) if g is None else g
                    new.append((x.detach() + step * (sp.hi - sp.lo) * g.sign()).clamp(sp.lo, sp.hi))
                else:
                    new.append(x)
            xs = tuple(new)
            step *= 0.9
            it_done += 1
            if on_step:
                on_step(done + it_done, total)
        yield xs
        xs = tuple((x + 0.05 * (sp.hi - sp.lo) * (2 * torch.rand(x.shape, generator=gen, dtype=F64) - 1)).clamp(sp.lo, sp.hi) if sp.is_float else x for x, sp in zip(xs, specs))
        xg = [x.clone().requires_grad_(True) if sp.is_float else x for x, sp in zip(xs, specs)]
        out = flat_outputs(probe.ref(*xg))
        flat = torch.cat([o.reshape(-1) for o in out])
        grads = iter(torch.autograd.grad(flat[j], [x for x in xg if x.requires_grad], allow_unused=True))
        gs = [next(grads) if sp.is_float else None for sp in specs]
        for sign in (1.0, -1.0):
            yield tuple(
                rounding_aligned(x, g, align_dtype, sp.lo, sp.hi, sign) if (g is not None and sp.is_float) else x
                for x, g, sp in zip(xs, gs, specs)
            )


def _adversarial(probe, loaded, best, steps, gen, in_dtype, on_step, done, total):
    specs = loaded.inputs
    err, xs, oi, oj = best
    scale = 0.1
    # Phase 2: quantization-aligned ascent from the worst input and from fresh random starts.
    long = steps > 40 and in_dtype is not None and any(sp.is_float for sp in specs)
    n_restart = 0 if long else max(0, min(4, steps // 15))
    starts = [xs] + loaded.sample_inputs(n_restart + 3, gen)[3:]
    used = 0
    try:
        q = _quantized_reference(probe) if long else None
    except RuntimeError:
        q = None
    smooth = min(steps // 10, SMOOTH_CAP) if q is not None and _smooth_share(probe, q, xs) >= 0.1 * err else 0
    if smooth:
        try:
            for cand in _smooth_ascent(probe, q, loaded, xs, gen, smooth, in_dtype, on_step, done, total):
                e2, i2, j2 = probe.error(cand)
                if e2 > err:
                    err, xs, oi, oj = e2, cand, i2, j2
        except RuntimeError:
            pass
    for st in starts[: n_restart]:
        try:
            cand = _quant_ascent(probe, loaded, st, gen, 10, in_dtype)
        except RuntimeError:
            cand = None
        if cand is None:
            break
        e2, i2, j2 = probe.error(cand)
        used += 1
        if e2 > err:
            err, xs, oi, oj = e2, cand, i2, j2
    steps = max(steps - used - smooth, 0)
    walk = 0
    if long:
        walk = max(steps - min(max(40, steps // 8), CLIMB_CAP), 0)
    steps -= walk
    for s in range(steps):
        cand = None
        if s % 3 == 0 and in_dtype is not None:
            try:
                grads = probe.gradient(xs, oi, oj)
                sign = 1.0 if (s // 3) % 2 == 0 else -1.0
                cand = tuple(
                    rounding_aligned(x, g, in_dtype, sp.lo, sp.hi, sign) if (g is not None and sp.is_float) else x
                    for x, g, sp in zip(xs, grads, specs)
                )
            except RuntimeError:
                cand = None
        if cand is None:
            parts = []
            for x, sp in zip(xs, specs):
                if sp.is_float:
                    w = (sp.hi - sp.lo) * scale
                    mask = torch.rand(x.shape, generator=gen) < 0.3
                    step = torch.randn(x.shape, generator=gen, dtype=F64) * w
                    parts.append((x + torch.where(mask, step, torch.zeros_like(step))).clamp(sp.lo, sp.hi))
                else:
                    y = x.clone()
                    flat = y.reshape(-1)
                    k = max(1, int(flat.numel() * 0.05))
                    idx = torch.randint(0, flat.numel(), (k,), generator=gen)
                    flat[idx] = torch.randint(int(sp.lo), int(sp.hi) + 1, (k,), generator=gen, dtype=y.dtype)
                    parts.append(y)
            cand = tuple(parts)
        e2, i2, j2 = probe.error(cand)
        if e2 > err:
            err, xs, oi, oj = e2, cand, i2, j2
        else:
            scale = max(scale * 0.9, 1e-4)
        if on_step:
            on_step(done + smooth + s + 1, total)
    if walk > 0:
        err, xs, oi, oj = _grid_walk(probe, specs, (err, xs, oi, oj), walk, gen, in_dtype, on_step, done + used + smooth + steps, total)
    return (err, xs, oi, oj)


def _grid(x: torch.Tensor, dtype: torch.dtype | str) -> torch.Tensor:
    """The spacing of ``dtype``'s values at each element of x (float64)."""
    a, b = _format_neighbours(x, dtype)
    return b - a


#: Largest budgets of the quantization-aligned ascent (iterations) and of the hill climbing
#: (evaluations) in a long search; the rest goes to the grid walk, whose batched candidates
#: cost less each (module docstring). Budgets up to 8000 steps are not capped.
SMOOTH_CAP = 3000
CLIMB_CAP = 1000
#: Candidates screened together by the grid walk's batched evaluation.
WALK_BATCH = 64
#: Shortest walk (steps = candidates evaluated) that screens in batches.
BATCH_FROM = 2000
#: Most input elements in one screening batch (64 x 784 for the examples; an input of more
#: than 8192 elements, such as ResNet-50's 150528, is walked one candidate at a time, since
#: a batch of its activations in float64 would not fit in memory).
BATCH_ELEMENTS = 65536
#: Rounds without an improvement after which the batched walk moves several elements at once.
STALL = 20
#: Screened errors in a row that a single evaluation of the chosen input does not reproduce,
#: after which the walk goes on one move at a time.
MISSES = 5


def _grid_moves(xs, specs, floats, sizes, gen, dtype, n: int) -> list[tuple[int, int, float]]:
    """``n`` random grid-walk moves from ``xs``: a float input element moved by one spacing of
    ``dtype`` up or down (clamped to the domain), as (input index, flat position, new value);
    moves that change nothing are dropped."""
    ks = torch.multinomial(sizes, n, replacement=True, generator=gen)
    moves = []
    for j, k in enumerate(floats):
        m = int((ks == j).sum())
        if m == 0:
            continue
        x, sp = xs[k].reshape(-1), specs[k]
        p = torch.randint(0, x.numel(), (m,), generator=gen)
        v = x[p].to(F64)
        d = _grid(v, dtype)
        up = torch.rand(m, generator=gen) < 0.5
        nv = torch.where(up, v + d, v - d).clamp(sp.lo, sp.hi)
        ok = torch.isfinite(nv) & (nv != v)
        moves += [(k, int(a), float(b)) for a, b in zip(p[ok].tolist(), nv[ok].tolist())]
    return moves


def _apply_moves(xs, moves) -> tuple[torch.Tensor, ...]:
    """``xs`` with the moves applied (a later move of the same element wins)."""
    out = [x.clone() for x in xs]
    for k, p, v in moves:
        out[k].view(-1)[p] = v
    return tuple(out)


def _stack_moves(xs, cands: list[list[tuple[int, int, float]]]) -> tuple[torch.Tensor, ...]:
    """One batch (dim 0) of ``xs`` with each candidate's moves applied to its own row."""
    b = len(cands)
    out = [x.repeat(b, *([1] * (x.dim() - 1))) for x in xs]
    for k in {m[0] for c in cands for m in c}:
        rows = [r for r, c in enumerate(cands) for m in c if m[0] == k]
        pos = [m[1] for c in cands for m in c if m[0] == k]
        val = [m[2] for c in cands for m in c if m[0] == k]
        flat = out[k].view(b, -1)
        flat[torch.tensor(rows), torch.tensor(pos)] = torch.tensor(val, dtype=flat.dtype)
    return tuple(out)


def _grid_walk(probe, specs, best, steps: int, gen, dtype, on_step, done: int, total: int):
    """Phase 4 of the module docstring: one-element moves by one spacing of ``dtype``, kept
    when the observed error grows. Where the model batches along dim 0
    (:meth:`ErrorProbe.batch_errors`), each round screens :data:`WALK_BATCH` candidate moves
    in one evaluation (on the CNN example 64 cost what about 24 single evaluations do), then the
    union of the moves that raised the error, and takes the better of that union and the
    best single move if :meth:`ErrorProbe.error` confirms it at batch size 1; after
    :data:`STALL` rounds without a gain each candidate moves 2-4 elements. Otherwise each
    move is evaluated alone and kept at the first improvement. A step is one candidate
    evaluated."""
    err, xs, oi, oj = best
    floats = [k for k, sp in enumerate(specs) if sp.is_float and xs[k].numel() > 0]
    if not floats:
        return best
    sizes = torch.tensor([xs[k].numel() for k in floats], dtype=F64)
    batch = min(WALK_BATCH, BATCH_ELEMENTS // max(1, sum(x.numel() for x in xs)))
    # Not for a short walk (a round of 64 candidates for one kept move would leave it a few
    # moves, where one candidate at a time keeps the first gain: as many moves as steps),
    # nor for large inputs (an image model's: the batch would not fit), nor for inputs
    # without a leading dim of 1 to stack along.
    use_batches = steps >= BATCH_FROM and batch >= 8 and all(x.dim() > 0 and x.shape[0] == 1 for x in xs)
    s = stall = misses = 0
    while s < steps:
        if use_batches and probe.batchable:
            nb = min(batch, steps - s)
            cands = [[m] for m in _grid_moves(xs, specs, floats, sizes, gen, dtype, nb)]
            if stall >= STALL:
                extra = _grid_moves(xs, specs, floats, sizes, gen, dtype, 3 * len(cands))
                cut = torch.randint(1, 4, (len(cands),), generator=gen).tolist()
                cands = [c + extra[3 * r : 3 * r + cut[r]] for r, c in enumerate(cands)]
            errs = probe.batch_errors(_stack_moves(xs, cands)) if len(cands) > 1 else None
            if errs is not None:
                i = int(torch.argmax(errs))
                floor = err * (1 + 1e-9)  # a gain beyond the float64 reference's last bits
                pick, screened = (cands[i], float(errs[i])) if float(errs[i]) > floor else (None, 0.0)
                good = [m for c, e in zip(cands, errs.tolist()) if e > floor for m in c]
                if pick is not None and len(good) > len(pick):
                    both = probe.batch_errors(_stack_moves(xs, [pick, good]))
                    if both is not None and float(both[1]) > float(both[0]):
                        pick, screened = good, float(both[1])
                gained = False
                if pick is not None:
                    cand = _apply_moves(xs, pick)
                    e2, i2, j2 = probe.error(cand)
                    if e2 > err:
                        err, xs, oi, oj = e2, cand, i2, j2
                        gained = True
                    # the float64 reference may round a batch otherwise in its last bits
                    misses = misses + 1 if abs(e2 - screened) > 1e-6 * screened else 0
                    if misses >= MISSES:
                        # the batched kernels round otherwise than at batch size 1 (fp32
                        # matmuls sum in another order): the screening says nothing here
                        probe.batchable = False
                stall = 0 if gained else stall + 1
                s += nb
                if on_step:
                    on_step(done + s, total)
                continue
        moves = _grid_moves(xs, specs, floats, sizes, gen, dtype, 1)
        if moves:
            cand = _apply_moves(xs, moves)
            e2, i2, j2 = probe.error(cand)
            if e2 > err:
                err, xs, oi, oj = e2, cand, i2, j2
        s += 1
        if on_step:
            on_step(done + s, total)
    return (err, xs, oi, oj)
