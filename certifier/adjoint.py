"""Sign-aware refinement of rounding-error bounds: a backward (adjoint) pass over the graph.

The forward pass of :mod:`certifier.rounding` carries error *magnitudes*: through a matmul
with weight W it charges ``|W| e``, as if every error had the sign that hurts most. With
random-sign weights that costs about sqrt(n) per layer (bound / observed of 10^3 on a
three-layer MLP). This pass keeps the signs of the exact linear maps instead.

Write the computed output as the exact one plus the errors made along the way. At each node
n the computed value is ``y^ = f(x^) + delta_n`` where ``x^`` are the *computed* inputs
and ``delta_n`` is the node's own rounding (casts, accumulation, storage) at those inputs; a
cast of an input on the way into n is an error ``c`` on that edge. Then, exactly,

    y^ - y = [f(x^) - f(x)] + delta_n,     f(x^) - f(x) = J_n (x^ - x)

where for the ops handled here ``J_n`` is exact: the linear map itself (matmul/conv with a
known weight, batch norm, average pooling, views), or a mean-value slope with a known
interval (relu: 1 where the computed and exact inputs are both positive, 0 where both are
<= 0, in [0, 1] otherwise; max pooling: the one window element that can be the maximum,
where there is only one; other windows are cuts, see below), or a mean-value Jacobian
enclosed over the widened box (smooth activations, softmax, layer norm: see their
handlers; the products of two activations split exactly as ``(A^ - A) B^ + A (B^ - B)``).
Unrolled to the outputs, ``y^_out - y_out = sum_n A_n delta_n`` with
``A_n`` the product of the J's along the paths from n to the outputs, held as an interval
matrix (center, radius) per output element, so

    |y^_out - y_out|_j <= sum_n sum_i (|A_n^c| + A_n^r)_{ji} |delta_n|_i.

Nothing is first-order: the slopes are exact mean-value slopes on boxes that contain both
the exact and the computed inputs (the forward pass's ranges widened by its error bounds),
and ``|delta_n|`` is bounded by the node's own error model evaluated with exact inputs on
those widened boxes (the same model the forward pass uses, so the arithmetic model is
shared). A node whose Jacobian is not handled here is a *cut*: its whole forward error
bound ``e_n`` (which covers everything upstream of it) enters as ``(|A^c| + A^r) e_n``. So
the result is never worse than sound, and the certified bound is the smaller of the two
passes, per configuration.

Relational refinements (certifier.ball gives each node an l2 ball ``||y(x) - c|| <= rho``
holding its exact values over the domain):

* Each row also carries an l2 part ``nu``: the row is ``C + D + E`` with ``|D| <= R``
  elementwise and ``||E||_2 <= nu``; a charge against m adds ``nu ||m||_2``. Through a dense
  map W the radius R (the undecided relus' [0, 1] slopes) may become ``||W||_2 ||R||_2`` of
  nu instead of ``|W|^T R``, which keeps no sign (per row, whichever costs less against the
  input's error bound); nu scales by each later map's l2 norm.
* Couplings: a charge ``sum_i w_i m_i`` whose m is affine in a node's output or input
  magnitudes (storage ``u |y|``, accumulation ``gamma |W^| |x^|``) pays those magnitudes at
  their box maxima; at one input they lie in the box *and* the ball, so the sum is at most
  the water-filling bound (ball.weighted_abs_sup), and the difference is taken back
  (:meth:`_Adjoint.couple`, :meth:`_Adjoint.couple_in`; the slopes come from the error
  models, ``out_slope`` / ``in_slope``, and are tested against finite differences).
* The weight rounding ``(W^ - W) x^`` is charged with the input's ball as well: its center
  part through ``g = C op(., dW)^T`` and its R / nu parts through ``||dW||_2``.
* Batch norm's parameter casts are charged exactly like a weight's (``dy = x ds + k``).
* The outputs' pass is rerun with their own refined bounds (fp8: the storage of ``|y| + e``).
* The hinges' (relu, max-pool, layer-norm and softmax inputs') refined bounds are fed back
  into the forward pass (``run_errors(override=)``), so every later forward bound -- the
  relus' outputs, the cuts, the widened boxes that enclose the Jacobians -- is computed from
  them. Where the forward pass had no finite bound only because some error outgrew what a
  rule can take (a layer norm whose variance is no longer bounded away from 0), the rerun
  forward pass may have one; it is as sound, and is used (``method`` "forward (refined
  hinges)", or "adjoint" when the output pass is smaller still). An overflow of a value
  past a format's range is never undone.

A refined bound ``t`` of a node's stored value bounds ``|y^ - y|``; the magnitude of the
node's pre-rounding value needs a bound of ``|f(x^) - f(x)|``, which is ``t`` plus the node's
own charges (``better_p``), not ``t``.

The float64 arithmetic of the pass itself is covered: each pushed radius is inflated by
the rounding of the products that formed the center (Higham Thm 3.5), and the final sums
by a relative 2^-40.

Cost: the interval matrices have (number of output elements) x (node size) entries, so the
pass runs only when that stays under a budget (classifier heads: MLP, CNN); otherwise the
forward bound is reported as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import torch

from certifier import failclosed
from certifier.ball import l2_upper, l2_upper_rows, map_norm, weighted_abs_sup
from certifier.interval import INF, Interval
from certifier.rounding import ErrorResult, _clean, _Ctx, _Run, cast_bound, run_errors
from certifier.walker import BoundsAnalysis, NodeInfo
from curvature_rules._common import ElementwiseError, MinError, ShapeError, fmag, map_configs
from curvature_rules.arithmetic import BinaryError, PowError
from curvature_rules.elementwise import AbsXError
from curvature_rules.linear import BilinearError
from curvature_rules.norm import BatchNormError, LayerNormError, _row_stats
from curvature_rules.reduction import SumError
from curvature_rules.shape import CatError
from curvature_rules.softmax import SoftmaxError, softmax_bounds
from curvature_rules.pooling import AvgPoolError, MaxPoolError, _batched

F64 = torch.float64
#: Largest (output elements) x (node elements) held by one interval matrix.
MAX_ENTRIES = 2.5e7
#: Largest number of error entries (configurations x node elements, all nodes) kept for it.
MAX_KEPT = 1.25e8
#: Most relu / max-pool inputs whose error bound is refined first (one pass each).
MAX_HINGES = 64
#: Extra passes over the outputs with their own refined error bounds (see certified_errors).
OUTPUT_REFINES = 3
_KNOWN = ("param", "buffer", "constant")

_SUM_SLACK = 1 + 2.0**-40
#: matrix products (short op names): a map whose l2 norm the Frobenius norm bounds
_MATMULS = ("mm", "bmm", "matmul", "addmm", "baddbmm")


def certified_errors(ba: BoundsAnalysis, assignments: list[Mapping[str, str]], *, terms: list | None = None, **kw) -> ErrorResult:
    """:func:`certifier.rounding.run_errors`, with each finite bound replaced by the adjoint
    pass's when that is smaller (``ErrorResult.method`` says which pass gave each bound).

    ``terms`` (a diagnostic for benchmarks/tightness.py, not part of any bound): when given a
    list, one entry per configuration is appended: the elementwise charges (each rounding
    at its worst sign) of the adjoint pass's worst output row, or None where the adjoint
    pass did not give the bound. See :func:`sign_factor`."""
    fits = _fits(ba, len(assignments))
    # NB: every node's error is kept only when the pass will run (BERT-base's would take
    # gigabytes; it is far over the budget).
    res = run_errors(ba, assignments, keep_errs=fits, exact_weights=fits, **kw)
    errs = res.node_err
    res.node_err = {}
    res.method = ["forward"] * len(assignments)
    res.layer_share = [None] * len(assignments)
    recs: list[torch.Tensor | None] = [None] * len(assignments)
    if not fits:
        if terms is not None:
            terms.extend(recs)
        return res
    outs = _float_outputs(ba)
    hinges = _hinges(ba)
    for c, a in enumerate(assignments):
        if not math.isfinite(res.bound[c]) and not (hinges and _undoable(ba, res.overflows[c])):
            continue  # a definite overflow (or nothing to refine): the forward verdict stands
        forward = (res.bound[c], res.overflow[c], list(res.overflows[c]))
        try:
            _refine(ba, res, c, a, errs, outs, hinges, terms, recs)
        except Exception as exc:  # noqa: BLE001 - the forward bound stands (certifier.failclosed)
            if failclosed.reraise():
                raise
            res.bound[c], res.overflow[c], res.overflows[c] = forward
            res.layer_share[c], recs[c] = None, None
            res.method[c] = f"forward (adjoint pass failed: {failclosed.describe(exc)})"
    if terms is not None:
        terms.extend(recs)
    return res


def _refine(ba: BoundsAnalysis, res: ErrorResult, c: int, a: Mapping[str, str], errs: dict, outs: list[str], hinges: list[str], terms: list | None, recs: list) -> None:
    """One configuration of :func:`certified_errors`: the hinges' refinements, then the
    outputs', with ``res`` updated where the adjoint bound is smaller."""
    # First the hinges (see _hinges), in graph order: their refined error bounds narrow the
    # boxes that decide which relus are active (and which window holds the maximum), and
    # those that enclose the later Jacobians, in every later pass.
    better: dict[str, torch.Tensor] = {}
    better_p: dict[str, torch.Tensor] = {}
    dw_norms: dict[str, float | None] = {}
    errs_c, cc = errs, c  # this configuration's forward bounds (and their index)

    def refine(names: list[str], adj: _Adjoint, t: torch.Tensor) -> bool:
        """Keep the smaller bounds; True when some bound got smaller."""
        off = 0
        gained = False
        for o in names:
            e = errs_c[o][0] if isinstance(errs_c[o], (tuple, list)) else errs_c[o]
            k = e[cc].numel()
            ti = t[off : off + k].reshape(e.shape[1:])
            prev = better.get(o, e[cc])
            gained = gained or bool((ti < prev).any())
            better[o] = torch.minimum(prev, ti)
            own = adj.root_own.get(o)
            if own is not None:
                tp = (ti + own[off : off + k].reshape(e.shape[1:]).clamp(min=0)) * _SUM_SLACK
                better_p[o] = torch.minimum(better_p.get(o, e[cc]), tp)
            off += k
        return gained

    last: list[ErrorResult] = []  # the latest repropagated forward pass

    def repropagate() -> None:
        """The forward pass again, for this configuration, with the refined bounds in
        place of the forward ones (every later node's forward bound shrinks with them)."""
        nonlocal errs_c, cc
        pre: dict[str, torch.Tensor] = {}
        r = run_errors(ba, [a], keep_errs=True, keep_nodes=False, override=better, pre_override=pre, exact_weights=True)
        last[:] = [r]
        errs_c, cc = r.node_err, 0
        for n, v in pre.items():
            # the forward bound before the minimum also bounds |f(x^) - f(x)| (wid_out)
            better_p[n] = torch.minimum(better_p[n], v) if n in better_p else v

    for n in hinges:
        e = errs_c.get(n)
        e = e[0] if isinstance(e, (tuple, list)) else e
        if e is None:
            continue  # exact already
        adj = _Adjoint(ba, a, cc, errs_c, better, [n], better_p, dw_norms)
        t = adj.run()
        if t is not None and refine([n], adj, t):
            repropagate()
    if not math.isfinite(res.bound[c]):
        # The forward pass had no finite bound, only because some error grew past what a
        # node's rule can take (a layer norm's variance, a hinge's box): the forward pass
        # rerun with the hinges' refined bounds is as sound, and may have one now.
        r = last[0] if last else None
        if r is None or not math.isfinite(r.bound[0]) or r.overflow[0] is not None:
            return
        res.bound[c], res.overflow[c], res.overflows[c] = r.bound[0], None, r.overflows[0]
        res.method[c] = "forward (refined hinges)"
    adj = _Adjoint(ba, a, cc, errs_c, better, outs, better_p, dw_norms)
    adj.by_layer = {}
    adj.terms = [] if terms is not None else None
    t = adj.run()
    b = float(t.max()) if t is not None and t.numel() else None
    # The outputs' own rounding is charged on |y| + e_y with e_y their forward error
    # bound; the pass's result is a bound on that error too, so rerunning with it in
    # place of e_y is sound and tighter (what matters for fp8, where u e_y is large).
    for _ in range(OUTPUT_REFINES):
        if t is None or b is None or not all(errs_c.get(o) is not None for o in outs):
            break
        refine(outs, adj, t)
        adj2 = _Adjoint(ba, a, cc, errs_c, better, outs, better_p, dw_norms)
        adj2.by_layer = {}
        adj2.terms = [] if terms is not None else None
        t2 = adj2.run()
        b2 = float(t2.max()) if t2 is not None and t2.numel() else None
        if b2 is None or b2 >= b * 0.99:
            if b2 is not None and b2 < b:
                adj, t, b = adj2, t2, b2
            break
        adj, t, b = adj2, t2, b2
    if b is not None and b < res.bound[c]:
        res.bound[c] = b
        res.method[c] = "adjoint"
        if adj.terms is not None and t is not None:
            j = int(t.argmax())
            recs[c] = torch.cat([v[j].reshape(-1) for v in adj.terms]) if adj.terms else torch.zeros(0, dtype=F64)
        if not adj.cuts:
            # NB: a cut charges everything upstream of it to its own layer, so layer
            # shares are only meaningful without one.
            sh = adj.by_layer
            for L, v in adj.boundary.items():
                sh[L] = sh[L] + v if L in sh else v
            res.layer_share[c] = {L: float(v.max()) * _SUM_SLACK for L, v in sh.items()}


def softmax_rows(c: torch.Tensor, R: torch.Tensor, L: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows through softmax's mean-value Jacobian (see :meth:`_Adjoint._softmax`), along the
    last dim: ``c`` (J, ..., n) with radii ``R``, y in [L, U] (..., n) over the box.
    Returns (center, radius, radius_R): for x, x^ in the box, ``sum_i c_i (y_i(x^) -
    y_i(x))`` lies in ``center . d +- radius . |d|`` (d = x^ - x), and
    ``|sum_i D_i (y_i(x^) - y_i(x))| <= radius_R . |d|`` for ``|D| <= R``."""
    n = c.shape[-1]
    yc, yr = (L + U) * 0.5, (U - L) * 0.5
    Pc = (c * yc).sum(-1, keepdim=True)
    Pr = (c.abs() * yr).sum(-1, keepdim=True)
    dc = c - Pc
    center = yc * dc
    # float64: Pc is a sum of n products, c - Pc and yc (c - Pc) one rounding each
    fl = U * (c.abs() + (c.abs() * U).sum(-1, keepdim=True)) * ((n + 6) * 2.0**-52)
    radius = yc * Pr + yr * (dc.abs() + Pr) + fl
    radius_r = U * (R + (R * U).sum(-1, keepdim=True)) * (1 + (n + 4) * 2.0**-52)
    return center, radius, radius_r


def layer_norm_box(lo: torch.Tensor, hi: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over the box [lo, hi] (rows, n): z = (x - mu) s in [zlo, zhi] (rows, n) and
    s = 1/sqrt(var + eps) in [s_lo, s_hi] (rows, 1)."""
    st = _row_stats(lo, hi, eps)
    s_lo, s_hi = 1.0 / st.smax * (1 - 2.0**-50), 1.0 / st.smin * (1 + 2.0**-50)
    q = torch.stack([st.dlo / st.smin, st.dlo / st.smax, st.dhi / st.smin, st.dhi / st.smax])
    zlo, zhi = q.amin(0), q.amax(0)
    # the float64 quotients err by 2^-53 relative; |z| <= zabs holds regardless
    zlo = torch.maximum(zlo - zlo.abs() * 2.0**-50, -st.zabs)
    zhi = torch.minimum(zhi + zhi.abs() * 2.0**-50, st.zabs)
    return zlo, zhi, s_lo, s_hi


def layer_norm_rows(a: torch.Tensor, Rg: torch.Tensor, zlo: torch.Tensor, zhi: torch.Tensor, s_lo: torch.Tensor, s_hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows through a layer norm's mean-value Jacobian (see :meth:`_Adjoint._layer_norm`).

    ``a``: (J, rows, n) coefficients times gamma; ``Rg``: their radii times |gamma|; z in
    [zlo, zhi] (rows, n) and s = 1/sqrt(var + eps) in [s_lo, s_hi] (rows, 1) over the box.
    Returns (center, radius, radius_R): for every x, x^ in the box and every row,
    ``sum_i a_i (z_i(x^) - z_i(x))`` lies in ``center . d +- radius . |d|`` (d = x^ - x),
    and ``|sum_i D_i (z_i(x^) - z_i(x))| <= radius_R . |d|`` for ``|D| <= Rg``."""
    n = a.shape[-1]
    zc, zr = (zlo + zhi) * 0.5, (zhi - zlo) * 0.5
    zm = zc.abs() + zr
    sc, sr = (s_lo + s_hi) * 0.5, (s_hi - s_lo) * 0.5
    abar = a.mean(-1, keepdim=True)
    Qc = (a * zc).sum(-1, keepdim=True)
    Qr = (a.abs() * zr).sum(-1, keepdim=True)
    Tc = a - abar - zc * Qc / n
    Tr = (zc.abs() * Qr + zr * (Qc.abs() + Qr)) / n
    # float64: every term of T is a sum of at most n + 3 products of magnitude within
    # s_hi (|a_k| + mean|a| + |z_k| sum|a_i| |z_i| / n)
    am = a.abs()
    mag = am + am.mean(-1, keepdim=True) + zm * (am * zm).sum(-1, keepdim=True) / n
    C_in = sc * Tc
    R_c = sc * Tr + sr * (Tc.abs() + Tr) + s_hi * mag * ((2 * n + 16) * 2.0**-52)
    R_r = s_hi * (Rg + Rg.sum(-1, keepdim=True) / n + zm * (Rg * zm).sum(-1, keepdim=True) / n) * (1 + (n + 8) * 2.0**-52)
    return C_in, R_c, R_r


def sign_factor(bound: float, charges: torch.Tensor | None) -> tuple[float, float]:
    """(share, factor) for the charges recorded by :func:`certified_errors` (``terms``): the
    share of ``bound`` that elementwise charges make up, and their sum over their l2 norm.

    Each charge is one rounding (or cast) at its worst sign. Were their signs independent
    and random, their sum would be about the l2 norm; a bound that must hold for every sign
    pattern pays the sum. The factor is what that costs at one input (a diagnostic: the
    l2 norm is no bound)."""
    if charges is None or charges.numel() == 0 or not math.isfinite(bound) or bound <= 0:
        return math.nan, math.nan
    ch = charges[charges > 0]
    if ch.numel() == 0:
        return 0.0, math.nan
    tot = float(ch.sum())
    return tot / bound, tot / float(ch.norm())


def _float_outputs(ba: BoundsAnalysis) -> list[str]:
    return [o for o in ba.outputs if ba.nodes[o].primary is not None and ba.nodes[o].primary.is_float]


def _carries(info: NodeInfo) -> bool:
    """A node the pass may hold an interval matrix for (not a parameter or a view of one)."""
    return info.kind not in _KNOWN and info.primary is not None and not info.is_point


def _undoable(ba: BoundsAnalysis, overflows: list) -> bool:
    """Every overflow of a configuration comes from the errors alone: an error with no
    finite bound, or a computed value ``|y| + e`` past the format's range where the exact
    values ``|y|`` are within it (smaller errors may undo it). Not a failed error model,
    nor a cast (whose producer's exact values are not checked here)."""
    if not overflows:
        return False
    for o in overflows:
        if "failed" in (o.detail or "") or o.op.startswith("cast into"):
            return False
        if math.isfinite(o.value):
            iv = ba.nodes[o.node].primary if o.node in ba.nodes else None
            if iv is None or not iv.is_float or not bool((fmag(iv) <= o.limit).all()):
                return False
    return True


def _hinges(ba: BoundsAnalysis) -> list[str]:
    """Inputs of relus, max pools, layer norms, softmax, rsqrt, GELU, sigmoid and of the
    first operand of bmm whose own pass fits the budget (at most MAX_HINGES): where the
    forward pass's error bound of the input widens the box that decides an active set, a
    layer norm's 1/sigma and z intervals, the slope of rsqrt near 0 (RMSNorm), a smooth
    activation's slope range or the other factor of a product, a refined bound narrows it
    for every later pass."""
    big = max((i.primary.numel() for i in ba.nodes.values() if _carries(i)), default=0)
    out: list[str] = []
    for info in ba.nodes.values():
        if info.op not in ("relu", "max_pool2d_with_indices", "native_layer_norm", "_softmax", "rsqrt", "bmm", "gelu", "sigmoid"):
            continue
        p = info.producers.get("self", info.producers.get("input"))
        if p is None or p in out or ba.nodes[p].kind in _KNOWN or ba.nodes[p].kind == "input":
            continue
        iv = ba.nodes[p].primary
        if iv is not None and iv.is_float and iv.numel() * big <= MAX_ENTRIES:
            out.append(p)
    return out[:MAX_HINGES]


def _fits(ba: BoundsAnalysis, F: int) -> bool:
    J = sum(ba.nodes[o].primary.numel() for o in _float_outputs(ba))
    if J == 0:
        return False
    sizes = [i.primary.numel() for i in ba.nodes.values() if _carries(i)]
    return J * max(sizes, default=0) <= MAX_ENTRIES and F * sum(sizes) <= MAX_KEPT


class _LocalCtx(_Ctx):
    """The error context of a node whose activation inputs are taken as exact (and uncast):
    the rule then bounds only the node's own rounding. Known inputs (weights, constants)
    keep their casts, which are part of that rounding."""

    def __init__(self, run: _Run, info: NodeInfo, act: set[str], rounded: frozenset[str] = frozenset()) -> None:
        super().__init__(run, info)
        self._act = act
        self._rounded = rounded  # known inputs passed already rounded to the format

    def cast_point(self, name: str):
        return None if name in self._rounded else super().cast_point(name)

    def err(self, name: str) -> torch.Tensor | None:
        return None if name in self._act or name in self._rounded else super().err(name)

    def rel(self, name: str):
        return None if name in self._act or name in self._rounded else super().rel(name)

    def err_or_cast(self, name: str):
        return (None, None) if name in self._act or name in self._rounded else super().err_or_cast(name)


class _Adjoint:
    def __init__(self, ba: BoundsAnalysis, assignment: Mapping[str, str], c: int, errs: dict, better: dict, outputs: list[str], better_p: dict | None = None, dw_norms: dict | None = None) -> None:
        self.ba = ba
        self.c = c
        self.errs = errs
        self.better = better  # node -> a refined error bound of its (first) output
        #: node -> a refined bound of |f(x^) - f(x)| for its first output (see wid_out)
        self.better_p = {} if better_p is None else better_p
        self.root_own: dict[str, torch.Tensor] = {}  # output -> its own processing's charges
        self.outputs = outputs
        self.run_ = _Run(ba, [assignment], local_only=False)
        self.J = sum(ba.nodes[o].primary.numel() for o in outputs)
        #: layer -> its nodes' share of ``total`` (their own rounding, the casts into them,
        #: and the whole forward bound of a cut), when asked for
        self.by_layer: dict[str, torch.Tensor] | None = None
        self.boundary: dict[str, torch.Tensor] = {}  # layer -> casts at its entry (see _input)
        self.cuts = 0  # cuts that charged a nonzero forward bound
        self.layer = ""
        self.adj: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.total = torch.zeros(self.J, dtype=F64)
        #: node -> ||W^ - W||_2 bound for this configuration (shared by its passes)
        self.dw_norms = {} if dw_norms is None else dw_norms
        #: the l2 part of the current node's adjoint rows (see the module docstring)
        self.nu = torch.zeros(self.J, dtype=F64)
        #: when a list: every elementwise charge, (J, n) per call (certified_errors' terms)
        self.terms: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ helpers
    def E(self, name: str, idx: int = 0) -> torch.Tensor | None:
        """This configuration's error bound of a node's output ``idx`` (forward, or refined)."""
        if idx == 0 and name in self.better:
            return self.better[name]
        e = self.errs.get(name)
        if isinstance(e, (tuple, list)):
            e = e[idx]
        if e is None:
            return None
        return e[self.c]

    def iv(self, name: str, idx: int = 0) -> Interval | None:
        out = self.ba.nodes[name].out
        if isinstance(out, tuple):
            return out[idx]
        return out

    def widened(self, name: str, extra: torch.Tensor | None = None) -> Interval:
        iv = self.ba.nodes[name].primary
        e = self.E(name)
        if extra is not None:
            e = extra if e is None else e + extra
        if e is None:
            return iv
        return Interval(iv.lo - e, iv.hi + e, iv.dtype)

    def charge(self, C: torch.Tensor, R: torch.Tensor, m: torch.Tensor | None, nu: torch.Tensor | None = None) -> None:
        """total += (|C| + R) m + nu ||m||_2, summed over the node's elements (0 coefficients
        exact); ``nu`` (default: the current node's) is the l2 part of the adjoint rows."""
        if m is None:
            return
        nu = self.nu if nu is None else nu
        w = (C.abs() + R).reshape(self.J, -1)
        m = m.reshape(1, -1).expand_as(w) if m.numel() == w.shape[1] else m.expand(C.shape[1:]).reshape(1, -1).expand_as(w)
        t = w * m
        t = torch.where(w == 0, torch.zeros_like(t), t)
        if self.terms is not None:
            self.terms.append(t.clone())
        t = t.sum(1)
        if bool((nu > 0).any()):
            t = t + torch.where(nu > 0, nu * l2_upper(m[0]), torch.zeros_like(nu))
        self._add(t)

    def couple(self, info: NodeInfo, model: BilinearError, C: torch.Tensor, R: torch.Tensor, loc: torch.Tensor | None, loc_lin: torch.Tensor | None) -> None:
        """Take back what :meth:`charge` paid for the output magnitudes of a linear node
        beyond their joint maximum over the domain.

        The node's local bound is ``rest_i + s (|y_i| + e_i)`` (``BilinearError.out_slope``),
        charged at the box maxima ``|y_i| <= fmag(out)_i``. At any one input the exact outputs
        lie in the box *and* in the node's l2 ball (certifier.ball), so
        ``sum_i w_i s |y_i| <= s * weighted_abs_sup(w)``; the difference to
        ``s sum_i w_i fmag(out)_i`` is subtracted (shrunk by 2^-40 for the float64 sums).
        Likewise the l2 part ``nu ||loc||_2``: ``||loc(x)|| <= ||loc - s fmag|| + s ||y(x)||``
        with ``||y(x)|| <= min(||fmag||, ||c|| + rho)``.

        That argument holds for the *linear* storage bound ``u (|y| + e)`` (``loc_lin``);
        ``loc``, what :meth:`charge` paid, bounds storage by the binade of |y| instead
        (certifier.formats.binade_scale), which is smaller. Both are sound, so the pass
        keeps the smaller: the coupled linear sum, or ``loc``'s sum as charged. The gain
        is therefore reduced by what ``loc_lin`` exceeds ``loc`` by (and is never negative).
        Likewise the l2 part: ``nu ||loc||`` was paid, ``nu joint2`` (from loc_lin) also holds."""
        ball = self.ba.nodes[info.name].ball
        if ball is None or self.J == 0:
            return
        slope = float(model.out_slope(_LocalCtx(self.run_, info, set()))[0])
        self._couple_out(info, ball, slope, C, R, loc, loc_lin)

    def linear_local(self, info: NodeInfo, model, act: set[str], rounded: frozenset[str] = frozenset()) -> torch.Tensor | None:
        """:meth:`local` with linear storage bounds, for a node's couplings (None: it has
        no ball, so there is nothing to couple)."""
        if self.ba.nodes[info.name].ball is None or self.J == 0:
            return None
        return self.local(info, model, act, rounded, linear=True)

    def _couple_out(self, info: NodeInfo, ball, slope: float, C, R, loc, loc_lin) -> None:
        if loc is None or loc_lin is None:
            return  # nothing was charged (or no linear bound to couple)
        mag = fmag(self.ba.nodes[info.name].primary)
        w = (C.abs() + R).reshape(self.J, -1)
        if ball.center.numel() != w.shape[1] or slope <= 0:
            return
        box = (w * mag.reshape(1, -1)).sum(1)
        joint = weighted_abs_sup(w, ball.center, mag, ball.radius)
        gain = ((box - joint).clamp(min=0) * slope) * (1 - 2.0**-40)
        lin, paid = loc_lin.reshape(-1), loc.reshape(-1)
        if lin.numel() != mag.numel() or paid.numel() != mag.numel():
            return
        # what the linear bound exceeds the charged one by, rounded up (elementwise float64
        # differences err by at most 2^-52 of the larger operand)
        over = torch.where(torch.isfinite(lin) & torch.isfinite(paid), (lin - paid).clamp(min=0) + lin.abs() * 2.0**-50, torch.full_like(lin, INF))
        d = (w * over.reshape(1, -1)).sum(1) * (1 + 2.0**-40)
        gain = torch.where(torch.isfinite(d), (gain - d).clamp(min=0), torch.zeros_like(gain))
        if bool((self.nu > 0).any()):
            rest = (lin - slope * mag.reshape(-1)).clamp(min=0) + lin.abs() * 2.0**-40
            ynorm = min(l2_upper(mag), l2_upper(ball.center) + ball.radius)
            joint2 = (l2_upper(rest) + slope * ynorm) * (1 + 2.0**-40)
            g2 = (l2_upper(paid) - joint2) * (1 - 2.0**-40)
            if g2 > 0:
                gain = gain + self.nu * g2
        if bool(torch.isfinite(gain).all()) and bool((gain > 0).any()):
            self._add(-gain)

    def computed_ball(self, info: NodeInfo, p: str, shape) -> tuple[torch.Tensor, float] | None:
        """(center, radius) of a ball holding the *computed* input ``x^`` from ``p`` into
        ``info``: p's ball widened by p's error bound and the cast on the edge."""
        ball = self.ba.nodes[p].ball
        if ball is None or ball.center.shape != shape:
            return None
        e = self.E(p)
        cast = self.edge_cast(info, p)
        e = cast if e is None else (e if cast is None else e + cast)
        c = ball.center
        return c, ball.radius + (0.0 if e is None else l2_upper(e.expand(c.shape)))

    def couple_in(self, info: NodeInfo, model: BilinearError, on_a: bool, p: str, wid: Interval, C, R) -> None:
        """Like :meth:`couple`, for the accumulation term ``c |W^| |x^|`` of a linear node whose
        weight is passed rounded (``BilinearError.in_slope``): its charge
        ``c sum_i w_i (|W^| |x^|)_i = c sum_j v_j |x^_j|`` with ``v = |W^|^T w`` is paid at the
        box maxima of the input; jointly over the input's box and ball it is at most
        ``c * weighted_abs_sup(v)``."""
        cb = self.computed_ball(info, p, wid.lo.shape)
        if cb is None or self.J == 0:
            return
        center, rho = cb
        slope = float(model.in_slope(_LocalCtx(self.run_, info, set()))[0])
        W = (model.B if on_a else model.A).value.to(F64).abs()
        fn = (lambda x: model.op(x, W)) if on_a else (lambda x: model.op(W, x))
        z = torch.zeros((self.J, *center.shape), dtype=F64)
        w = (C.abs() + R).reshape(self.J, *C.shape[1:])
        v = torch.func.vjp(fn, z)[1](w)[0].reshape(self.J, -1)
        mag = fmag(wid).reshape(-1)
        n = mag.numel()
        box = (v @ mag) * (1 - (model.k + n + 8) * 2.0**-52)
        joint = weighted_abs_sup(v, center, mag, rho)
        gain = (box - joint).clamp(min=0) * slope * (1 - 2.0**-40)
        if bool(torch.isfinite(gain).all()) and bool((gain > 0).any()):
            self._add(-gain)

    def cut(self, C: torch.Tensor, R: torch.Tensor, e: torch.Tensor | None, nu: torch.Tensor | None = None) -> None:
        """Charge a node's whole forward error bound (everything upstream of it included);
        ``nu``: the rows' l2 part (default: the current node's)."""
        nu = self.nu if nu is None else nu
        if e is not None and bool((e > 0).any()) and (bool(((C != 0) | (R != 0)).any()) or bool((nu > 0).any())):
            self.cuts += 1
        self.charge(C, R, e, nu)

    def charge_signed(self, C: torch.Tensor, R: torch.Tensor, vc: torch.Tensor, vr: torch.Tensor, alt=None) -> None:
        """total += |A v| for an error v in [vc - vr, vc + vr] that is known up to vr (a
        weight's exact rounding applied to an input box): the center's signs are kept.
        ``alt`` = (bound on |C v| per row, center of v, l2 radius of v around it) from the
        input's ball (:meth:`_signed_ball`): the R and nu parts then also use the ball."""
        w = C.reshape(self.J, -1)
        vc, vr = vc.reshape(-1), vr.reshape(-1)
        Rf = R.reshape(self.J, -1)
        n = vc.numel()
        dot = (w @ vc).abs() + w.abs() @ vr + (w.abs() @ vc.abs()) * ((n + 2) * 2.0**-52)
        vmag = vc.abs() + vr
        rad = Rf @ vmag
        vnorm = l2_upper(vmag)
        if alt is not None:  # the input's ball, see _bilinear
            dot = torch.minimum(dot, alt[0])
            if alt[2] is not None:
                rad = torch.minimum(rad, weighted_abs_sup(Rf, alt[1].reshape(-1), vmag, alt[2]))
                vnorm = min(vnorm, (l2_upper(alt[1]) + alt[2]) * (1 + 2.0**-50))
        if self.terms is not None:
            self.terms.append(torch.cat([dot.reshape(-1, 1), Rf * vmag.reshape(1, -1)], 1))
        if bool((self.nu > 0).any()):
            rad = rad + self.nu * vnorm
        self._add(dot + rad)

    def _add(self, v: torch.Tensor) -> None:
        self.total += v
        if self.by_layer is not None:
            acc = self.by_layer.get(self.layer)
            self.by_layer[self.layer] = v.clone() if acc is None else acc + v

    def rounded_known(self, info: NodeInfo, name: str, iv: Interval):
        """(the known input rounded to this node's storage format, its exact rounding error)
        when it is cast (None otherwise, or when the dtype cannot hold the format). The cast
        rounds to nearest (DESIGN 3); checked against the model's ``u |w| + eta/2``."""
        ctx = _Ctx(self.run_, info)
        cp = ctx.cast_point(name)
        if cp is None or not iv.is_point:
            return None
        fmt = self.run_.node_fmts[info.name][0].storage
        dt = fmt.torch_dtype
        if dt is None:
            return None
        v = iv.value
        try:
            r = v.to(dt).to(v.dtype)
        except (RuntimeError, TypeError):
            return None
        d = r.to(F64) - v.to(F64)
        if not bool(torch.isfinite(r).all()) or bool((d.abs() > float(cp[0][0]) * v.to(F64).abs() + float(cp[1][0])).any()):
            return None
        return r, d

    def push(self, name: str, C: torch.Tensor, R: torch.Tensor, nu: torch.Tensor, idx: int = 0) -> None:
        key = (name, idx)
        if key in self.adj:
            c0, r0, n0 = self.adj[key]
            self.adj[key] = (c0 + C, r0 + R, (n0 + nu) * _SUM_SLACK)
        else:
            self.adj[key] = (C, R, nu)

    def known(self, pname: str) -> bool:
        """An input whose value is exact: a parameter or constant, or a node the forward pass
        found exact (a view of a weight)."""
        prod = self.ba.nodes[pname]
        return prod.kind in _KNOWN or (prod.kind != "input" and self.errs.get(pname) is None)

    def edge_cast(self, info: NodeInfo, pname: str) -> torch.Tensor | None:
        """Bound on the cast of activation ``pname`` into ``info``'s format (None: no cast)."""
        ctx = _Ctx(self.run_, info)
        cp = ctx._cast_params(self.ba.nodes[pname])
        if cp is None:
            return None
        u, he = float(cp[0][0]), float(cp[1][0])
        e = self.E(pname)
        iv = self.ba.nodes[pname].primary
        m = fmag(iv)
        return cast_bound(iv, m if e is None else m + e, e, u, he)

    def local(self, info: NodeInfo, model, act: set[str], rounded: frozenset[str] = frozenset(), linear: bool = False) -> torch.Tensor | None:
        """The node's own rounding: ``model`` with the inputs ``act`` exact and ``rounded``
        passed already rounded. ``linear``: storage bounded by ``u |y| + eta/2`` (as the
        couplings assume) rather than by the binade of |y| (rounding._Ctx.linear)."""
        ctx = _LocalCtx(self.run_, info, act, rounded)
        ctx.linear = linear
        e = model.propagate(ctx)
        if isinstance(e, (tuple, list)):
            e = e[0]
        return None if e is None else _clean(e)[0]

    def wid_out(self, name: str, iv: Interval, idx: int = 0) -> Interval:
        """The node's exact output box widened to hold its exact value at the *computed*
        inputs, ``f(x^)``: by a bound on ``|f(x^) - f(x)|``. The forward error bound is one;
        a refined bound ``t`` of ``|y^ - y|`` is not (``y^ = f(x^) + delta``), but
        ``t + own`` is, with ``own`` bounding the node's own rounding (``better_p``)."""
        e = self.better_p.get(name) if idx == 0 else None
        if e is None:
            e = self.errs.get(name)
            if isinstance(e, (tuple, list)):
                e = e[idx]
            e = None if e is None else e[self.c]
        return iv if e is None else Interval(iv.lo - e, iv.hi + e, iv.dtype)

    # ------------------------------------------------------------------ the pass
    def run(self) -> torch.Tensor | None:
        """Per element of the outputs, the bound on its error (None: not finite)."""
        ba = self.ba
        off = 0
        for o in self.outputs:
            iv = ba.nodes[o].primary
            n = iv.numel()
            C = torch.zeros((self.J, n), dtype=F64)
            C[torch.arange(off, off + n), torch.arange(n)] = 1.0
            self.push(o, C.reshape((self.J, *iv.shape)), torch.zeros((self.J, *iv.shape), dtype=F64), torch.zeros(self.J, dtype=F64))
            off += n
        for name in reversed(list(ba.nodes)):
            keys = [k for k in self.adj if k[0] == name]
            if not keys:
                continue
            info = ba.nodes[name]
            self.layer = info.layer
            entries = {k[1]: self.adj.pop(k) for k in keys}
            if info.kind in _KNOWN or info.kind == "input":
                continue  # exact values
            if info.kind == "getitem":
                src = info.producers["self"]
                for (C, R, nu) in entries.values():
                    self.push(src, C, R, nu, int(info.node.args[1]))
                continue
            self.nu = entries[0][2] if 0 in entries else None
            before = self.total.clone() if name in self.outputs else None
            if set(entries) != {0} or not self._handle(info, *entries[0][:2]):
                for idx, (C, R, nu) in entries.items():
                    self.nu = nu
                    self.cut(C, R, self.E(name, idx))
            if before is not None:
                # what the node's own processing charged its own rows (>= its own rounding)
                self.root_own[name] = self.total - before
            if not bool(torch.isfinite(self.total).all()):
                return None
        return self.total * _SUM_SLACK

    def _handle(self, info: NodeInfo, C: torch.Tensor, R: torch.Tensor) -> bool:
        res = info.result
        model = None if res is None else res.error
        if info.unsupported is not None or model is None or info.primary is None or not info.primary.is_float:
            return False
        acts = [a for a, p in info.producers.items() if not self.known(p)]
        if isinstance(model, MinError):
            # the smaller of several sound models (RMSNorm's chains): the generic one, first,
            # has the structure the handlers pass rows through and is sound on its own
            model = model.models[0]
        if isinstance(model, BilinearError):
            return self._bilinear(info, model, acts, C, R)
        if isinstance(model, ShapeError) and not model.multi and acts == [model.arg]:
            return self._shape(info, model, C, R)
        if isinstance(model, ElementwiseError) and info.op == "relu" and acts == [model.arg]:
            return self._relu(info, model, C, R)
        if isinstance(model, ElementwiseError) and model.dinf is not None and not model.exact and acts == [model.arg]:
            return self._smooth(info, model, C, R)
        if isinstance(model, AbsXError) and model.inner.dinf is not None and acts == [model.inner.arg]:
            return self._smooth(info, model.inner, C, R, wrap=lambda e: AbsXError(e, model.ulps_x))
        if isinstance(model, BinaryError) and model.kind == "add":
            return self._residual(info, model, acts, C, R)
        if isinstance(model, BinaryError) and model.kind == "mul" and len(acts) == 1:
            return self._scaled(info, model, acts[0], C, R)
        if isinstance(model, BinaryError) and model.kind == "mul" and len(acts) == 2:
            return self._times(info, model, acts, C, R)
        if isinstance(model, CatError) and acts:
            return self._cat(info, model, acts, C, R)
        if isinstance(model, ElementwiseError) and info.op == "neg" and model.exact and acts == [model.arg]:
            one = torch.full(info.primary.shape, -1.0, dtype=F64)
            self._slope(info, model.arg, C, R, one, one)  # exact: no rounding of its own
            return True
        if isinstance(model, PowError) and acts == ["self"]:
            return self._pow(info, model, C, R)
        if isinstance(model, SumError) and acts == ["self"]:
            return self._sum(info, model, C, R)
        if isinstance(model, BatchNormError) and acts == ["input"]:
            return self._batch_norm(info, model, C, R)
        if isinstance(model, LayerNormError) and acts == ["input"]:
            return self._layer_norm(info, model, C, R)
        if isinstance(model, SoftmaxError) and acts == ["self"] and not model.log and model.masked is None:
            return self._softmax(info, model, C, R)
        if isinstance(model, AvgPoolError) and acts == ["self"]:
            return self._avg_pool(info, model, C, R)
        if isinstance(model, MaxPoolError) and acts == ["self"]:
            return self._max_pool(info, C, R)
        return False

    def _input(self, info: NodeInfo, arg: str, C_in: torch.Tensor, R_in: torch.Tensor, nu_in: torch.Tensor | None = None) -> None:
        """Charge the cast on the edge from ``arg``'s producer, and pass the adjoint on.
        ``nu_in``: the l2 part of the rows passed on (default: unchanged, for maps of l2 norm
        at most 1)."""
        nu_in = self.nu if nu_in is None else nu_in
        p = info.producers[arg]
        cast = self.edge_cast(info, p)
        self.charge(C_in, R_in, cast, nu_in)
        prod = self.ba.nodes[p]
        if cast is None and self.by_layer is not None and prod.layer != info.layer and prod.kind != "input":
            # For the allocation's linear model only (not part of the bound): the cast this
            # edge would carry if the layer ran in another format than its producer's, as the
            # local-only pass charges at every layer boundary.
            u, he = self.run_.fvec[info.name][:2]
            e = self.E(p)
            m = fmag(prod.primary)
            w = (C_in.abs() + R_in).reshape(self.J, -1)
            cst = float(u[0]) * (m if e is None else m + e) + float(he[0])
            v = (w * cst.reshape(1, -1)).sum(1) + nu_in * l2_upper(cst.expand(C_in.shape[1:]))
            acc = self.boundary.get(info.layer)
            self.boundary[info.layer] = v if acc is None else acc + v
        self.push(p, C_in, R_in, nu_in)

    def _product(self, info: NodeInfo, m: BilinearError, C, R) -> bool:
        """y = alpha op(A, B) (+ a known bias) with both operands activations (attention's
        q k^T and p v). Exactly, ``A^ B^ - A B = (A^ - A) B^ + A (B^ - B)``: A's rows are
        C op(., B^)^T with B^ in B's widened box (center Bc, radius Br): center
        ``vjp(Bc, C)``, radius ``vjp(Br, |C|) + vjp(|Bc| + Br, R)``; B's rows likewise with
        A in its exact box (A op A: both terms go to the one producer and add up). The
        node's own rounding (accumulation on |A^| |B^|, storage, the bias's cast) is its
        error model on the widened boxes; the l2 part passes by the Frobenius norm of the
        other operand's box (>= the l2 norm of a matrix product's map, batched or
        broadcast, not of a convolution's)."""
        if info.op not in _MATMULS:
            return False  # a convolution's l2 norm is not bounded by its kernel's Frobenius norm
        wa, wb = self._widened_in(info, m.a_name), self._widened_in(info, m.b_name)
        if wa is None or wb is None:
            return False
        if not self._charge_own(info, replace(m, A=wa, B=wb, out=self.wid_out(info.name, m.out)), {m.a_name, m.b_name}, C, R):
            return False
        g = (m.k + 2) * 2.0**-52
        al = abs(m.alpha)

        def rows(other: Interval, on_a: bool, shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            oc, orad = (other.lo + other.hi) * 0.5, (other.hi - other.lo) * 0.5
            om = oc.abs() + orad

            def vjp(W: torch.Tensor, cot: torch.Tensor) -> torch.Tensor:
                z = torch.zeros((self.J, *shape), dtype=F64)
                fn = (lambda a: m.op(a, W)) if on_a else (lambda b: m.op(W, b))
                return torch.func.vjp(fn, z)[1](cot)[0]

            Ci = vjp(oc, C) * m.alpha
            Ri = (vjp(orad, C.abs()) + vjp(om, R + g * C.abs())) * (al * (1 + g))
            return Ci, Ri, self.nu * (al * l2_upper(om) * (1 + 2.0**-50))

        Ca, Ra, nua = rows(wb, True, tuple(m.A.shape))
        Cb, Rb, nub = rows(m.A, False, tuple(m.B.shape))
        self._input(info, m.a_name, Ca, Ra, nua)
        self._input(info, m.b_name, Cb, Rb, nub)
        return True

    def _bilinear(self, info: NodeInfo, m: BilinearError, acts: list[str], C, R) -> bool:
        if len(acts) == 2 and set(acts) == {m.a_name, m.b_name} and (m.bias is None or m.bias.is_point):
            return self._product(info, m, C, R)
        if len(acts) != 1 or acts[0] not in (m.a_name, m.b_name):
            return False  # an erring bias
        on_a = acts[0] == m.a_name
        if not (m.B if on_a else m.A).is_point:
            return False  # an exact but interval-valued operand: no known matrix to push through
        act_iv = m.A if on_a else m.B
        known = (m.B if on_a else m.A).value.to(F64)
        p = info.producers[acts[0]]
        wid = self.widened(p, self.edge_cast(info, p))
        kname = m.b_name if on_a else m.a_name
        kiv = m.B if on_a else m.A
        out = self.wid_out(info.name, m.out)
        # The weight's cast is known exactly (dW = W^ - W): its effect alpha op(x~, dW) on the
        # input box keeps its signs, and the rest of the node's rounding is bounded with the
        # rounded weight W^ in place of W (accumulation over |W^| |x~|).
        rw = self.rounded_known(info, kname, kiv)
        rb = None
        if m.bias is not None and m.bias_name is not None and m.bias.is_point:
            rb = self.rounded_known(info, m.bias_name, m.bias)
        if rw is not None:
            W_hat = Interval.point(rw[0])
            model = replace(m, A=wid, B=W_hat, out=out) if on_a else replace(m, A=W_hat, B=wid, out=out)
            rounded = {kname}
            if rb is not None:
                model = replace(model, bias=Interval.point(rb[0]))
                rounded.add(m.bias_name)
            loc = self.local(info, model, {acts[0]}, frozenset(rounded))
            self.charge(C, R, loc)
            self.couple(info, model, C, R, loc, self.linear_local(info, model, {acts[0]}, frozenset(rounded)))
            self.couple_in(info, model, on_a, p, wid, C, R)
            dW = rw[1]
            c, r = (wid.lo + wid.hi) * 0.5, (wid.hi - wid.lo) * 0.5
            g = (m.k + 2) * 2.0**-52
            opf = (lambda a, w: m.op(a, w)) if on_a else (lambda a, w: m.op(w, a))
            vc = opf(c, dW) * m.alpha
            vr = (opf(r, dW.abs()) + g * opf(c.abs(), dW.abs())) * abs(m.alpha) * (1 + g)
            if rb is not None:
                db = rb[1].reshape(m.bias.shape) * m.beta
                vc = vc + db
                vr = vr + (vc.abs() + db.abs()) * 2.0**-52
            self.charge_signed(C, R, vc, vr, self._signed_ball(info, m, on_a, p, wid, C, dW, None if rb is None else rb[1]))
        else:
            model = replace(m, A=wid, out=out) if on_a else replace(m, B=wid, out=out)
            loc = self.local(info, model, {acts[0]})
            self.charge(C, R, loc)
            self.couple(info, model, C, R, loc, self.linear_local(info, model, {acts[0]}))
            if _Ctx(self.run_, info).cast_point(kname) is None:
                self.couple_in(info, model, on_a, p, wid, C, R)  # P = 0: no cast on W

        def vjp(W: torch.Tensor, cot: torch.Tensor) -> torch.Tensor:
            z = torch.zeros((self.J, *act_iv.shape), dtype=F64)
            fn = (lambda a: m.op(a, W)) if on_a else (lambda b: m.op(W, b))
            return torch.func.vjp(fn, z)[1](cot)[0]

        g = (m.k + 2) * 2.0**-52
        a = abs(m.alpha)
        C_in = vjp(known, C) * m.alpha
        sigma = self.ba.op_norms.get(info.name)
        if sigma is not None and bool((R > 0).any()):
            # A dense map spreads an elementwise radius over every input (|W|^T R loses all
            # sign cancellation); as an l2 part it costs only ||W||_2 ||R||_2 -- against the
            # l2 norm of whatever it is charged with upstream. Per row, the route whose cost
            # against this input's forward error bound is smaller is taken (both are sound).
            R_base = vjp(known.abs(), g * C.abs()) * (a * (1 + g))
            R_full = vjp(known.abs(), R + g * C.abs()) * (a * (1 + g))
            rn = l2_upper_rows(R.reshape(self.J, -1))
            nu_l2 = (self.nu + rn) * (a * sigma * (1 + 2.0**-40))
            nu_el = self.nu * (a * sigma * (1 + 2.0**-40))
            e = self.E(p)
            m_in = fmag(self.ba.nodes[p].primary) if e is None else e
            m_in = m_in.expand(act_iv.shape).reshape(1, -1)
            cost_l2 = (R_base.reshape(self.J, -1) * m_in).sum(1) + nu_l2 * l2_upper(m_in)
            cost_el = (R_full.reshape(self.J, -1) * m_in).sum(1) + nu_el * l2_upper(m_in)
            use_l2 = (cost_l2 <= cost_el).reshape((self.J,) + (1,) * (R_base.dim() - 1))
            R_in = torch.where(use_l2, R_base, R_full)
            nu_in = torch.where(use_l2.reshape(-1), nu_l2, nu_el)
        elif sigma is not None:
            R_in = vjp(known.abs(), g * C.abs()) * (a * (1 + g))
            nu_in = self.nu * (a * sigma * (1 + 2.0**-40))
        else:
            R_in = vjp(known.abs(), R + g * C.abs()) * (a * (1 + g))
            nu_in = self.nu * (a * self._op_norm(info, m, on_a, known) * (1 + 2.0**-40))
        self._input(info, acts[0], C_in, R_in, nu_in)
        return True

    def _signed_ball(self, info, m: BilinearError, on_a: bool, p: str, wid: Interval, C, dW, db) -> torch.Tensor | None:
        """Bound on ``|C (alpha op(x^, dW) + beta db)|`` per row, from the input's ball.

        With ``g = alpha C op(., dW)^T`` (one vector per row) and ``x^ = c + t``:
        ``C v = g.c + C beta db + g.t``, and ``|g.t|`` over ``|t| <= d`` (the widened box
        around c) and ``||t|| <= rho + ||e||`` (the ball, widened by the input's error
        bound) is at most :func:`weighted_abs_sup` of |g|. The float64 products are covered
        by a relative ``(n + k + 4) 2^-52`` of their absolute sums."""
        cb = self.computed_ball(info, p, wid.lo.shape)
        if cb is None:
            return None
        c, rho = cb
        d = torch.maximum(wid.hi - c, c - wid.lo).clamp(min=0)
        fn = (lambda x: m.op(x, dW)) if on_a else (lambda x: m.op(dW, x))
        fa = (lambda x: m.op(x, dW.abs())) if on_a else (lambda x: m.op(dW.abs(), x))
        z = torch.zeros((self.J, *c.shape), dtype=F64)
        Cf = C.reshape(self.J, *C.shape[1:])
        g = torch.func.vjp(fn, z)[1](Cf)[0] * m.alpha
        n_in = c.numel()
        gf = g.reshape(self.J, -1)
        center = gf @ c.reshape(-1)
        absum = gf.abs() @ c.reshape(-1).abs()
        if db is not None:
            dbv = (db.reshape(m.bias.shape) * m.beta).expand(C.shape[1:]).reshape(-1)
            Cr = C.reshape(self.J, -1)
            center = center + Cr @ dbv
            absum = absum + Cr.abs() @ dbv.abs()
        spread = weighted_abs_sup(gf.abs(), torch.zeros(n_in, dtype=F64), d, rho)
        # rounding of g itself: |g^ - g| <= gamma |C| op(., |dW|)^T, against |x^| <= |c| + d
        ga = torch.func.vjp(fa, z)[1](C.abs().reshape(self.J, *C.shape[1:]))[0] * abs(m.alpha)
        tiny = (ga.reshape(self.J, -1) @ (c.abs() + d).reshape(-1)) * ((m.k + 4) * 2.0**-52)
        out = center.abs() + spread + absum * ((n_in + m.k + 4) * 2.0**-52) + tiny
        out = torch.where(torch.isfinite(out), out, torch.full_like(out, INF))
        # v itself: v(x^) = alpha op(c, dW) + beta db + alpha op(t, dW), ||op(t, dW)|| <= ||dW|| ||t||
        zc = fn(c) * m.alpha
        za = fa(c.abs()) * abs(m.alpha)
        if db is not None:
            dbv = db.reshape(m.bias.shape) * m.beta
            zc = zc + dbv
            za = za + dbv.abs()
        if info.name not in self.dw_norms:
            self.dw_norms[info.name] = map_norm(self.ba.nodes[info.name], on_a, dW, c.shape)
        s = self.dw_norms[info.name]
        zr = None if s is None else (abs(m.alpha) * s * rho + l2_upper(za * ((m.k + 4) * 2.0**-52))) * (1 + 2.0**-40)
        return out, zc, zr

    def _op_norm(self, info: NodeInfo, m: BilinearError, on_a: bool, known: torch.Tensor) -> float:
        """An l2 operator norm bound of ``x -> op(x, W)``: the walker's (certifier.ball), or
        Schur's ``sqrt(||A||_1 ||A||_inf)`` from |W|'s row and column sums."""
        if not bool((self.nu > 0).any()):
            return 0.0
        s = self.ba.op_norms.get(info.name)
        if s is not None:
            return s
        act = m.A if on_a else m.B
        fn = (lambda x: m.op(x, known.abs())) if on_a else (lambda x: m.op(known.abs(), x))
        ones = torch.ones(act.shape, dtype=F64)
        out, vjp = torch.func.vjp(fn, ones)
        row = float(out.max())
        col = float(vjp(torch.ones_like(out))[0].max())
        return math.sqrt(row * col) * (1 + (m.k + 8) * 2.0**-52)

    def _shape(self, info: NodeInfo, m: ShapeError, C, R) -> bool:
        p = info.producers[m.arg]
        shp = self.ba.nodes[p].primary.shape
        z = torch.zeros((self.J, *shp), dtype=F64)
        _, f = torch.func.vjp(lambda t: map_configs(m.fn, t), z)
        # NB: shape ops move or duplicate elements; the adjoint sums duplicates exactly.
        nu_in = None
        if bool((self.nu > 0).any()):
            # an input feeding k outputs sums k entries: l2 norm grows by at most sqrt(k)
            ones = torch.ones((1, *C.shape[1:]), dtype=F64)
            k = float(f(ones.expand(self.J, *C.shape[1:]))[0][0].max()) if C.numel() else 1.0
            nu_in = self.nu * math.sqrt(max(k, 1.0)) * (1 + 2.0**-50)
        self._input(info, m.arg, f(C)[0], f(R)[0], nu_in)
        return True

    def _relu(self, info: NodeInfo, m: ElementwiseError, C, R) -> bool:
        p = info.producers[m.arg]
        cast = self.edge_cast(info, p)
        x = self.widened(p, cast)
        self.charge(C, R, self.local(info, replace(m, x=x, y=self.wid_out(info.name, m.y)), {m.arg}))
        active = (x.lo > 0).unsqueeze(0)
        dead = (x.hi <= 0).unsqueeze(0)
        lo, hi = C - R, C + R
        lo2 = torch.where(active, lo, torch.where(dead, torch.zeros_like(lo), lo.clamp(max=0)))
        hi2 = torch.where(active, hi, torch.where(dead, torch.zeros_like(hi), hi.clamp(min=0)))
        C_in = (lo2 + hi2) * 0.5
        R_in = (hi2 - lo2) * 0.5 + (lo2.abs() + hi2.abs()) * 2.0**-52
        self._input(info, m.arg, C_in, R_in)
        return True

    def _smooth(self, info: NodeInfo, m: ElementwiseError, C, R, wrap=None) -> bool:
        """y = f(x) elementwise: f(x^) - f(x) = f'(xi) (x^ - x) with xi in the widened box,
        so the slope lies in [dinf, dsup] there (both from the op's rule: tanh, sigmoid, exp,
        erf, clamp, GELU, SiLU); ``wrap`` rebuilds a wrapping error model (GELU's)."""
        p = info.producers[m.arg]
        x = self.widened(p, self.edge_cast(info, p))
        dmax = (m.dtop or m.dsup)(x.lo, x.hi)
        if not bool(torch.isfinite(dmax).all()):
            return False
        dmin = torch.minimum(m.dinf(x.lo, x.hi), dmax)
        if not bool(torch.isfinite(dmin).all()):
            return False
        local = replace(m, x=x, y=self.wid_out(info.name, m.y))
        if not self._charge_own(info, wrap(local) if wrap else local, {m.arg}, C, R):
            return False
        self._slope(info, m.arg, C, R, dmin, dmax)
        return True

    def _cat(self, info: NodeInfo, m: CatError, acts: list[str], C, R) -> bool:
        """cat / stack: exact; each input gets its own block of the rows (the l2 part of a
        block is at most the whole's). A known input's cast into the node's format is
        charged on its block."""
        d = m.dim + 1
        off = 0
        for name, shape in zip(m.names, m.shapes):
            if m.stack:
                Cp, Rp = C.select(d, off), R.select(d, off)
                off += 1
            else:
                k = shape[m.dim] if len(shape) > m.dim else 0
                Cp, Rp = C.narrow(d, off, k), R.narrow(d, off, k)
                off += k
            if name in acts:
                self._input(info, name, Cp, Rp, self.nu)
            else:
                e = _Ctx(self.run_, info).err(name)
                if e is not None:
                    self.charge(Cp, Rp, _clean(e)[0])
        return True

    def _pow(self, info: NodeInfo, m: PowError, C, R) -> bool:
        """y = x^n for a constant n (RMSNorm's x^2): the mean-value slope n xi^(n-1) lies
        between its values at the widened box's ends, for an integer n >= 1 (where n - 1 is
        even and positive and the box holds 0, between 0 and the larger) or any n on a
        positive box. The node's own rounding (the exponent's cast included) is its error
        model on the widened box."""
        x = self._widened_in(info, "self")
        n = m.n
        if x is None:
            return False
        if n == int(n) and n >= 1:
            k = int(n) - 1
            a, b = n * x.lo**k, n * x.hi**k
            dmin, dmax = torch.minimum(a, b), torch.maximum(a, b)
            if k % 2 == 0 and k > 0:  # even power: least value 0 where the box holds 0
                dmin = torch.where((x.lo < 0) & (x.hi > 0), torch.zeros_like(dmin), dmin)
        elif bool((x.lo > 0).all()):
            a, b = n * x.lo ** (n - 1), n * x.hi ** (n - 1)
            dmin, dmax = torch.minimum(a, b), torch.maximum(a, b)
        else:
            return False
        # float64 powers: a few ulps of relative error
        dmin, dmax = dmin - dmin.abs() * 2.0**-44, dmax + dmax.abs() * 2.0**-44
        if not (bool(torch.isfinite(dmin).all()) and bool(torch.isfinite(dmax).all())):
            return False
        if not self._charge_own(info, replace(m, x=x, out=self.wid_out(info.name, m.out)), {"self"}, C, R):
            return False
        self._slope(info, "self", C, R, dmin, dmax)
        return True

    def _slope(self, info: NodeInfo, arg: str, C, R, dmin: torch.Tensor, dmax: torch.Tensor) -> None:
        """Pass rows C +- R through an elementwise slope known to lie in [dmin, dmax]."""
        dmin, dmax = dmin.unsqueeze(0), dmax.unsqueeze(0)
        lo, hi = C - R, C + R
        c = torch.stack([lo * dmin, lo * dmax, hi * dmin, hi * dmax])
        lo2, hi2 = c.amin(0), c.amax(0)
        C_in = (lo2 + hi2) * 0.5
        R_in = (hi2 - lo2) * 0.5 + (lo2.abs() + hi2.abs()) * 2.0**-52
        dm = float(torch.maximum(dmin.abs(), dmax.abs()).max()) if dmin.numel() else 0.0
        self._input(info, arg, C_in, R_in, self.nu * dm * (1 + 2.0**-50))

    def _reduce_to(self, Ca: torch.Tensor, Ra: torch.Tensor, shape: tuple[int, ...], slack: float) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Row coefficients over the node's output, summed over the dims an operand of
        ``shape`` is broadcast along; the float64 rounding of those sums (gamma_cnt, Higham
        Thm 3.5) and a relative ``slack`` of the coefficients join the radius. Returns
        (center, radius, terms per sum)."""
        out_shape = tuple(Ca.shape[1:])
        nd = len(out_shape)
        padded = (1,) * (nd - len(shape)) + tuple(shape)
        dims = [i + 1 for i, (s_, o) in enumerate(zip(padded, out_shape)) if s_ == 1 and o != 1]
        cnt = math.prod(out_shape[d - 1] for d in dims) if dims else 1
        slack = slack + ((cnt + 2) * 2.0**-52 if cnt > 1 else 0.0)
        if dims:
            Ab, Ca, Ra = Ca.abs().sum(dims, keepdim=True), Ca.sum(dims, keepdim=True), Ra.sum(dims, keepdim=True)
        else:
            Ab = Ca.abs()
        if slack:
            Ra = Ra + (Ab + Ra) * slack
        return Ca.reshape((self.J, *shape)), Ra.reshape((self.J, *shape)), cnt

    def _scaled(self, info: NodeInfo, m: BinaryError, a: str, C, R) -> bool:
        """y = c x with x an activation and c known (a Python scalar or a constant tensor),
        computed as fl(c^ x^) with c^ the format's rounding of c: exactly,
        ``y^ - y = c^ (x^ - x) + (c^ - c) x + delta``. The last two terms are the node's own
        charge (its error model with x exact, on the widened box: the scalar's or the
        constant's cast and the product's rounding); the row's coefficients times
        ``c^ in c +- (u |c| + he)`` pass on to x."""
        if m.integer or m.ints is not None or a not in (m.xname, m.yname):
            return False
        x_iv, c_iv = (m.x, m.y) if a == m.xname else (m.y, m.x)
        if not (c_iv.is_point or bool((c_iv.lo == c_iv.hi).all())) or not bool(torch.isfinite(c_iv.lo).all()):
            return False
        if not (bool(torch.isfinite(x_iv.lo).all()) and bool(torch.isfinite(x_iv.hi).all())):
            return False
        p = info.producers[a]
        w = self.widened(p, self.edge_cast(info, p))
        local = replace(m, x=w if a == m.xname else m.x, y=w if a == m.yname else m.y, out=self.wid_out(info.name, m.out))
        self.charge(C, R, self.local(info, local, {a}))
        nd = C.dim() - 1
        c = c_iv.lo.to(F64)
        c = c.reshape((1,) * (nd - c.dim()) + tuple(c.shape)).unsqueeze(0)
        u, he = self.run_.fvec[info.name][:2]
        u, he = float(u[0]), float(he[0])
        Ca = C * c
        Ra = R * c.abs() + (C.abs() + R) * (u * c.abs() + he)
        Ca, Ra, cnt = self._reduce_to(Ca, Ra, tuple(x_iv.shape), 2.0**-52)
        cmax = float(c.abs().max()) * (1 + u) + he if c.numel() else 0.0
        self._input(info, a, Ca, Ra, self.nu * (cmax * math.sqrt(cnt) * (1 + 2.0**-50)))
        return True

    def _times(self, info: NodeInfo, m: BinaryError, acts: list[str], C, R) -> bool:
        """y = x x' with both factors activations (a gated MLP's silu(g) u, RMSNorm's
        x rsqrt(ms)): exactly ``x^ x'^ - x x' = (x^ - x) x'^ + x (x'^ - x')``. x's rows are
        C x'^ with x'^ in its widened box (center, radius), x''s are C x with x in its exact
        box, each summed over the dims its operand is broadcast along; the node's own
        rounding is its error model on the widened boxes. (x x: both terms go to the one
        producer and add up.)"""
        if m.integer or m.ints is not None or sorted(acts) != sorted([m.xname, m.yname]):
            return False
        wide = {a: self._widened_in(info, a) for a in acts}
        if None in wide.values():
            return False
        if not self._charge_own(info, replace(m, x=wide[m.xname], y=wide[m.yname], out=self.wid_out(info.name, m.out)), set(acts), C, R):
            return False
        nd = C.dim() - 1
        for a, other in ((m.xname, wide[m.yname]), (m.yname, m.x)):
            oc, orad = (other.lo + other.hi) * 0.5, (other.hi - other.lo) * 0.5
            oc = oc.reshape((1,) * (nd - oc.dim()) + tuple(oc.shape)).unsqueeze(0)
            orad = orad.reshape((1,) * (nd - orad.dim()) + tuple(orad.shape)).unsqueeze(0)
            om = oc.abs() + orad
            Ca = C * oc
            Ra = C.abs() * orad + R * om
            shape = tuple((m.x if a == m.xname else m.y).shape)
            Ca, Ra, cnt = self._reduce_to(Ca, Ra, shape, 2.0**-52)
            omax = float(om.max()) if om.numel() else 0.0
            self._input(info, a, Ca, Ra, self.nu * (omax * math.sqrt(cnt) * (1 + 2.0**-50)))
        return True

    def _sum(self, info: NodeInfo, m: SumError, C, R) -> bool:
        """Sum or mean over some dims: an exact linear map; the rows are broadcast back over
        the reduced dims (divided by n for a mean, with its float64 rounding). The l2 part
        passes by the map's norm (sqrt n, or 1/sqrt n for a mean)."""
        x = self._widened_in(info, "self")
        if x is None or not self._charge_own(info, replace(m, x=x, out=self.wid_out(info.name, m.out)), {"self"}, C, R):
            return False
        z = torch.zeros((self.J, *m.x.shape), dtype=F64)
        back = torch.func.vjp(torch.vmap(m.fn), z)[1]
        C_in, R_in = back(C)[0], back(R)[0]
        n = max(m.n, 1)
        if m.mean:
            C_in = C_in / n
            R_in = R_in / n + C_in.abs() * 2.0**-52
            nu_in = self.nu / math.sqrt(n) * (1 + 2.0**-50)
        else:
            nu_in = self.nu * math.sqrt(n) * (1 + 2.0**-50)
        self._input(info, "self", C_in, R_in, nu_in)
        return True

    def _residual(self, info: NodeInfo, m: BinaryError, acts: list[str], C, R) -> bool:
        """y = x + alpha x' (add, sub, a residual connection): exactly,
        ``y^ - y = (x^ - x) + alpha (x'^ - x') + delta`` with delta the node's own rounding
        (the sum's storage, alpha's product), bounded by its error model on the widened
        boxes, and a known operand's cast, charged with its signs. Each activation operand
        gets the row's coefficients (times alpha), summed over the dims it is broadcast
        along."""
        if m.integer or m.ints is not None:
            return False
        ivs = {m.xname: m.x, m.yname: m.y}
        args = [a for a in acts if a in ivs]
        if len(args) != len(acts) or len(set(args)) != len(args):
            return False
        for a in args:
            iv = ivs[a]
            if not (bool(torch.isfinite(iv.lo).all()) and bool(torch.isfinite(iv.hi).all())):
                return False  # fixed infinities (additive masks) keep the forward pass
        wide = {a: self.widened(info.producers[a], self.edge_cast(info, info.producers[a])) for a in args}
        # A known operand's cast into the format is known exactly (an embedding row, a bias
        # at a point): charged with its signs, and the node's own rounding is bounded with
        # the rounded operand in its place (as a weight's in _bilinear).
        signed = []
        for k, iv, scalar in ((m.xname, m.x, m.x_scalar), (m.yname, m.y, m.y_scalar)):
            if k is None or scalar or k in args or k not in info.producers or not iv.is_point:
                continue
            r = self.rounded_known(info, k, iv)
            if r is not None:
                wide[k] = Interval.point(r[0])
                signed.append((k, r[1]))
        local = replace(m, x=wide.get(m.xname, m.x), y=wide.get(m.yname, m.y), out=self.wid_out(info.name, m.out))
        if not self._charge_own(info, local, set(args), C, R, frozenset(k for k, _ in signed)):
            return False
        out_shape = tuple(C.shape[1:])
        for k, d in signed:
            f = 1.0 if k == m.xname else float(m.alpha)
            vc = (d.to(F64) * f).expand(out_shape)
            self.charge_signed(C, R, vc, vc.abs() * (2.0**-52 if f != 1.0 else 0.0))
        for a in args:
            f = 1.0 if a == m.xname else float(m.alpha)
            # the float64 product by alpha errs by 2^-53 relative
            Ca, Ra, cnt = self._reduce_to(C * f, R * abs(f), tuple(ivs[a].shape), 0.0 if abs(f) == 1.0 else 2.0**-52)
            self._input(info, a, Ca, Ra, self.nu * (abs(f) * math.sqrt(cnt) * (1 + 2.0**-50)))
        return True

    def _batch_norm(self, info: NodeInfo, m: BatchNormError, C, R) -> bool:
        p = info.producers["input"]
        x = self.widened(p, self.edge_cast(info, p))
        out = self.iv(info.name, 0)
        model = replace(m, x=x, out=self.wid_out(info.name, out))
        # The parameters' casts are known exactly: the node's rounding is bounded with the
        # rounded parameters, and their effect dy = x (s^ - s) - (rm^ s^ - rm s) + (b^ - b)
        # (per channel, affine in x) is charged with its signs (charge_signed).
        rounded: dict[str, torch.Tensor] = {}
        for nm in ("weight", "bias", "running_mean", "running_var"):
            if nm in info.producers:
                r = self.rounded_known(info, nm, self.ba.nodes[info.producers[nm]].primary)
                if r is not None:
                    rounded[nm] = r[0].to(F64)
        if rounded:
            w2 = rounded.get("weight", m.w)
            b2 = rounded.get("bias", m.b)
            rm2 = rounded.get("running_mean", m.rm)
            rv2 = rounded.get("running_var", m.rv)
            s2 = torch.rsqrt(rv2 + m.eps) * (w2 if w2 is not None else 1.0)
            model = replace(model, w=w2, b=b2, rm=rm2, rv=rv2, scale=s2)
        loc = self.local(info, model, {"input"}, frozenset(rounded))
        self.charge(C, R, loc)
        ball = self.ba.nodes[info.name].ball
        if ball is not None:
            # BatchNormError's bound is ``tot + u (fmag(out) + tot) + he``: slope u in |y|
            self._couple_out(info, ball, float(_LocalCtx(self.run_, info, set()).u[0]), C, R, loc, self.linear_local(info, model, {"input"}, frozenset(rounded)))
        if rounded:
            self._bn_params(info, m, p, x, C, R, s2, rm2, b2)
        nd = len(m.x.shape)
        s = m.scale.reshape((1, 1, -1) + (1,) * (nd - 2))
        # NB: scale = w rsqrt(rv + eps) in float64: relative error well under 2^-48.
        self._input(info, "input", C * s, R * s.abs() + (C.abs() + R) * s.abs() * 2.0**-48, self.nu * float(m.scale.abs().max()) * (1 + 2.0**-47))
        return True

    def _widened_in(self, info: NodeInfo, arg: str) -> Interval | None:
        """The box holding both the exact and the computed input ``arg`` (its cast on the
        edge included), or None where it is not finite."""
        p = info.producers[arg]
        x = self.widened(p, self.edge_cast(info, p))
        if not (bool(torch.isfinite(x.lo).all()) and bool(torch.isfinite(x.hi).all())):
            return None
        return x

    def _charge_own(self, info: NodeInfo, model, acts: set[str], C, R, rounded: frozenset[str] = frozenset()) -> bool:
        """Charge the node's own rounding: its error model (``model``, already on the widened
        boxes) with the inputs ``acts`` exact (and ``rounded`` known inputs passed already
        rounded). False (nothing charged) where it is not finite."""
        loc = self.local(info, model, acts, rounded)
        if loc is not None and not bool(torch.isfinite(loc).all()):
            return False
        self.charge(C, R, loc)
        return True

    def _softmax(self, info: NodeInfo, m: SoftmaxError, C, R) -> bool:
        """y = softmax(x) along a dim: the Jacobian ``J_ik = y_i (delta_ik - y_k)`` sends a
        row c to ``y_k (c_k - c . y)``; its mean value along x -> x^ is enclosed with y in
        its box over the widened input box (softmax_bounds). Radii pass as
        ``U_k (R_k + sum_i R_i U_i)``, the l2 part by ``||J||_2 <= max y`` (J is positive
        semidefinite with eigenvalues at most max y). The node's own rounding is its error
        model on the widened box."""
        x = self._widened_in(info, "self")
        if x is None or not self._charge_own(info, replace(m, x=x, out=self.wid_out(info.name, m.out)), {"self"}, C, R):
            return False
        d = m.dim
        L, U = softmax_bounds(x.lo.movedim(d, -1), x.hi.movedim(d, -1))
        C_in, R_c, R_r = softmax_rows(C.movedim(d + 1, -1), R.movedim(d + 1, -1), L, U)
        nu_in = self.nu * (float(U.max()) if U.numel() else 0.0)
        self._input(info, "self", C_in.movedim(-1, d + 1), (R_c + R_r).movedim(-1, d + 1), nu_in)
        return True

    def _layer_norm(self, info: NodeInfo, m: LayerNormError, C, R) -> bool:
        """y = gamma z + beta, z = (x - mu) s, s = (var + eps)^-1/2 over rows of n. Exactly,
        ``y^ - y = Jbar (x^ - x) + delta`` with ``Jbar`` the mean of the Jacobian
        ``J = diag(gamma) s (I - 11^T/n - z z^T/n)`` along the segment x -> x^, so a row c
        passes on ``c Jbar``, enclosed by evaluating ``s (a - mean(a) - z (a . z)/n)``,
        a = c gamma, with s and z in their intervals over the widened box (the segment lies
        in it). An incoming radius R passes as ``sum_i R_i |J_ik|`` <=
        ``s_hi (R_k |g_k| + sum_i R_i |g_i| / n + |z_k| sum_i R_i |g_i| |z_i| / n)``; the l2
        part by ``||J||_2 <= max|gamma| s`` (I - 11^T/n - z z^T/n is a projection: z is
        orthogonal to 1 and |z|^2 = n var / (var + eps) <= n). delta is the node's own
        rounding (its error model on the widened box: the statistics, rsqrt, the affine
        map and the casts of gamma and beta)."""
        if m.fused or m.out_shape is not None or (m.w is not None and not m.w.is_point) or (m.b is not None and not m.b.is_point):
            return False
        x = self._widened_in(info, "input")
        if x is None:
            return False
        n = m.n
        lo, hi = x.lo.reshape(-1, n), x.hi.reshape(-1, n)
        zlo, zhi, s_lo, s_hi = layer_norm_box(lo, hi, m.eps)
        if not (bool(torch.isfinite(s_hi).all()) and bool(torch.isfinite(zlo).all()) and bool(torch.isfinite(zhi).all())):
            return False
        if not self._charge_own(info, replace(m, x=x, out=self.wid_out(info.name, m.out)), {"input"}, C, R):
            return False
        g = torch.ones(n, dtype=F64) if m.w is None else m.w.value.to(F64).reshape(-1)
        J = self.J
        rows = lo.shape[0]
        C_in, R_c, R_r = layer_norm_rows(C.reshape(J, rows, n) * g, R.reshape(J, rows, n) * g.abs(), zlo, zhi, s_lo, s_hi)
        gmax = float(g.abs().max()) if n else 0.0
        nu_in = self.nu * (gmax * float(s_hi.max()) * (1 + 2.0**-48))
        shape = (J, *m.x.shape)
        self._input(info, "input", C_in.reshape(shape), (R_c + R_r).reshape(shape), nu_in)
        return True

    def _bn_params(self, info: NodeInfo, m: BatchNormError, p: str, x: Interval, C, R, s2, rm2, b2) -> None:
        """Charge ``|C dy|`` for the batch norm's parameter rounding ``dy = x ds + k`` (per
        channel ``ds = s^ - s``, ``k = -(rm^ s^ - rm s) + (b^ - b)``), x in the widened input
        box and, where there is one, the input's ball (as :meth:`_signed_ball`). The float64
        evaluation of ds and k errs by at most 2^-50 of the magnitudes involved."""
        nd = len(m.x.shape)
        sh = (1, -1) + (1,) * (nd - 2)
        b0 = m.b if m.b is not None else torch.zeros_like(m.scale)
        b2 = b2 if b2 is not None else torch.zeros_like(m.scale)
        ds = (s2 - m.scale).reshape(sh)
        k = (-(rm2 * s2 - m.rm * m.scale) + (b2 - b0)).reshape(sh)
        e_ds = ((s2.abs() + m.scale.abs()) * 2.0**-50).reshape(sh)
        e_k = ((rm2 * s2).abs() + (m.rm * m.scale).abs() + b2.abs() + b0.abs()).reshape(sh) * 2.0**-50
        cb, rb = (x.lo + x.hi) * 0.5, (x.hi - x.lo) * 0.5
        xm = cb.abs() + rb
        vc = cb * ds + k
        vr = rb * ds.abs() + xm * e_ds + e_k + (cb * ds).abs() * 2.0**-52
        alt = None
        cb = self.computed_ball(info, p, x.lo.shape)
        if cb is not None:
            c, rho = cb
            d = torch.maximum(x.hi - c, c - x.lo).clamp(min=0)
            Cf = C.reshape(self.J, -1)
            g = (C * ds.unsqueeze(0)).reshape(self.J, -1)
            kk = k.expand(c.shape).reshape(-1)
            center = g @ c.reshape(-1) + Cf @ kk
            n = c.numel()
            err = (Cf.abs() @ ((c.abs() + d) * e_ds + e_k).expand(c.shape).reshape(-1)) + (g.abs() @ c.reshape(-1).abs() + Cf.abs() @ kk.abs()) * ((n + 4) * 2.0**-52)
            spread = weighted_abs_sup(g.abs(), torch.zeros(n, dtype=F64), d, rho)
            dot = center.abs() + spread + err
            zc = c * ds + k
            za = ((c.abs() * e_ds + e_k) + (c * ds).abs() * 2.0**-52).expand(c.shape)
            # z - zc = t ds + x^ (true ds - ds) + (true k - k): the middle term's t part too
            zr = ((float(ds.abs().max()) + float(e_ds.max())) * rho + l2_upper(za)) * (1 + 2.0**-40)
            alt = (torch.where(torch.isfinite(dot), dot, torch.full_like(dot, INF)), zc, zr)
        self.charge_signed(C, R, vc.expand(x.lo.shape), vr.expand(x.lo.shape), alt)

    def _avg_pool(self, info: NodeInfo, m: AvgPoolError, C, R) -> bool:
        p = info.producers["self"]
        x = self.widened(p, self.edge_cast(info, p))
        model = replace(m, x=x, out=self.wid_out(info.name, m.out))
        loc = self.local(info, model, {"self"})
        self.charge(C, R, loc)
        ball = self.ba.nodes[info.name].ball
        if ball is not None:
            self._couple_out(info, ball, float(m.out_slope(_LocalCtx(self.run_, info, set()))[0]), C, R, loc, self.linear_local(info, model, {"self"}))
        z = torch.zeros((self.J, *m.x.shape), dtype=F64)
        _, f = torch.func.vjp(lambda t: _batched(m.fn, t, m.nsp), z)
        g = (m.k + 4) * 2.0**-52
        # The window weights are positive: the radius goes through the same map.
        nu_in = None
        if bool((self.nu > 0).any()):
            ones = torch.ones((1, *m.x.shape), dtype=F64)
            row = float(_batched(m.fn, ones, m.nsp).max())
            col = float(f(torch.ones((self.J, *C.shape[1:]), dtype=F64))[0][0].max())
            nu_in = self.nu * math.sqrt(row * col) * (1 + (m.k + 8) * 2.0**-52)
        self._input(info, "self", f(C)[0], f(R + g * C.abs())[0] * (1 + g), nu_in)
        return True

    def _max_pool(self, info: NodeInfo, C, R) -> bool:
        args = list(info.node.args) + [None] * 6
        x_iv = self.ba.nodes[info.producers["self"]].primary
        if info.op != "max_pool2d_with_indices" or len(x_iv.shape) != 4:
            return False
        ks = list(args[1])
        st = list(args[2]) if args[2] else ks
        pad = list(args[3]) if args[3] is not None else [0]
        dil = list(args[4]) if args[4] is not None else [1]
        ceil = bool(args[5]) if args[5] is not None else False
        if len(ks) == 1:
            ks = ks * 2
        if len(st) == 1:
            st = st * 2
        if st != ks or any(v != 0 for v in pad) or any(v != 1 for v in dil) or ceil:
            return False  # only non-overlapping windows that tile the input
        p = info.producers["self"]
        x = self.widened(p, self.edge_cast(info, p))
        kh, kw = ks
        H, W = x_iv.shape[-2:]
        Ho, Wo = C.shape[-2:]
        # A window element may be the maximum (of the exact or the computed input) only if
        # its upper end reaches the largest lower end of its window.
        mlo = torch.nn.functional.max_pool2d(x.lo, ks, ks)
        up = mlo.repeat_interleave(kh, -2).repeat_interleave(kw, -1)
        hi = x.hi[..., : Ho * kh, : Wo * kw]
        cand = hi >= up
        n_cand = torch.nn.functional.avg_pool2d(cand.to(F64), ks, ks) * (kh * kw)
        single = (n_cand <= 1).unsqueeze(0)
        # A window with one candidate passes its error through unchanged (max(x^) - max(x)
        # is e_i). In a window with several, max(x^) - max(x) lies between the errors of the
        # two argmaxes; rather than spreading the coefficient over every candidate, the
        # window is a cut: its forward error bound enters as is.
        e_out = self.E(info.name, 0)
        multi = ~single
        nu_in = None
        if bool(multi.any()) and bool((self.nu > 0).any()):
            # The l2 part of the rows cannot be split between cut and passed windows: all
            # of it is a cut here, against the whole output's error bound.
            self.cut(torch.zeros_like(C), torch.zeros_like(R), e_out)
            nu_in = torch.zeros_like(self.nu)
        self.cut(torch.where(multi, C, torch.zeros_like(C)), torch.where(multi, R, torch.zeros_like(R)), e_out, torch.zeros_like(self.nu))
        keep = single.repeat_interleave(kh, -2).repeat_interleave(kw, -1) & cand.unsqueeze(0)
        Cu = C.repeat_interleave(kh, -2).repeat_interleave(kw, -1)
        Ru = R.repeat_interleave(kh, -2).repeat_interleave(kw, -1)
        C_in = torch.zeros((self.J, *x_iv.shape), dtype=F64)
        R_in = torch.zeros((self.J, *x_iv.shape), dtype=F64)
        C_in[..., : Ho * kh, : Wo * kw] = torch.where(keep, Cu, torch.zeros_like(Cu))
        R_in[..., : Ho * kh, : Wo * kw] = torch.where(keep, Ru, torch.zeros_like(Ru))
        assert H >= Ho * kh and W >= Wo * kw
        self._input(info, "self", C_in, R_in, nu_in)
        return True
