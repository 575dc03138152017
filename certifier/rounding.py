"""Sound rounding-error propagation over the graph (DESIGN 4.3, 4.4).

One pass evaluates F *configurations* at once (for example the 7 uniform formats, or a
mixed per-layer assignment): every error is a float64 tensor of shape ``(F, *node_shape)``
bounding ``|computed - exact|`` elementwise, where "exact" is real arithmetic on the model's
parameters over the input domain. Each node's :class:`~curvature_rules.ErrorModel` carries
its input errors through the op (nonlinear remainder included: the rules use the mean value
theorem on boxes inflated by the input errors, or exact identities) and adds the node's own
rounding, so the output error satisfies ``e_out <= L e_in + Delta_local`` without dropping
higher-order terms. Summed over paths this is the ``sum_i G_i Delta_i`` of DESIGN 4.3.

Casts: a tensor read by a node whose storage format does not contain the producer's format
(weights stored in fp32 read by an fp16 layer, the fp64 inputs of the domain, an activation
crossing from an fp32 layer into a bf16 one) is rounded on the way in: ``u_c |x^| + eta_c/2``.

Overflow (DESIGN 4.4): a configuration in which some computed value ``|x| + e`` can exceed the
largest finite value of the format it is stored in is marked inadmissible for that node, with
the reason ("overflow: exp output up to 1.6e+05 > 65504"), and its error becomes infinite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from certifier import failclosed
from certifier.formats import FORMATS, Format, accumulation_format, binade_scale, cast_error
from certifier.interval import INF, Interval
from certifier.walker import BoundsAnalysis, NodeInfo
from curvature_rules._common import MARKER_SLACK, ShapeError, exact_infinite, fmag

F64 = torch.float64


def dtype_format(dtype: torch.dtype) -> Format | None:
    for f in FORMATS.values():
        if f.torch_dtype == dtype and not f.compute_only:
            return f
    return None


def contains(big: Format, small: Format | None) -> bool:
    """Every value of ``small`` is a value of ``big`` (so a cast from small to big is exact)."""
    if small is None:
        return False
    return big.p >= small.p and big.max >= small.max and big.eta <= small.eta


@dataclass
class Overflow:
    node: str
    layer: str
    op: str
    value: float
    limit: float
    format: str
    detail: str | None = None

    def reason(self) -> str:
        if not math.isfinite(self.value):
            why = f" ({self.detail})" if self.detail else ""
            return f"unbounded: {self.op} output in {self.layer or '(model)'} has no finite bound{why}"
        return f"overflow: {self.op} output up to {self.value:.3g} > {self.limit:.6g} ({self.format})"


@dataclass
class ErrorResult:
    configs: list[str]
    bound: list[float]  # certified max-abs output error per configuration
    overflow: list[Overflow | None]  # first overflow per configuration
    overflows: list[list[Overflow]] = field(default_factory=list)  # all, per configuration
    node_max: dict[str, list[float]] = field(default_factory=dict)  # per node, per config
    output_err: dict[str, torch.Tensor] = field(default_factory=dict)  # per output node (F, *shape)
    #: which pass gave each bound: "forward", or "adjoint" (certifier.adjoint.certified_errors;
    #: "forward (adjoint pass failed: ...)" where the refinement raised, certifier.failclosed)
    method: list[str] = field(default_factory=list)
    #: per configuration whose bound came from the adjoint pass: layer -> the largest (over
    #: output elements) part of that bound charged to the layer's nodes, plus the casts its
    #: entry would carry in another format than its neighbours' (else None)
    layer_share: list = field(default_factory=list)
    #: every node's error (run_errors(keep_errs=True) only; certifier.adjoint reads them)
    node_err: dict[str, object] = field(default_factory=dict)


#: Arguments that read an integer tensor as positions, not values (no conversion to float).
_INDEX_ARGS = frozenset({"indices", "index", "repeats", "offsets", "target"})


class _Ctx:
    """The ErrorContext a rule's error model sees (see curvature_rules.registry)."""

    def __init__(self, run: "_Run", info: NodeInfo) -> None:
        self.run = run
        self.info = info
        fv = run.fvec[info.name]
        self.F = run.F
        self.u, self.he, self.u_acc, self.he_acc, self.u_mul, self._fmts, self.eta_mul = fv
        # NB: rules may ask for the same input's error more than once (e.g. GELU's extra
        # |x|-relative term); results are never written in place, so they can be shared.
        self._errs: dict[str, torch.Tensor | None] = {}
        #: calls of :meth:`store` and the last result, kept for a node a relu reads
        #: (_Run.relu_fed; see _Ctx.positive_store_bound)
        self.n_stores = 0
        self.last_store: torch.Tensor | None = None

    #: True: storage and casts are bounded by the linear ``u |v| + eta/2`` (what the
    #: adjoint pass's couplings take back from, certifier.adjoint); False: by the rounding
    #: of the magnitude's binade, ``u B(|v|) + eta/2`` (certifier.formats.binade_scale).
    linear = False

    def b(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.reshape((self.F,) + (1,) * ndim)

    def store(self, mag: torch.Tensor, ndim: int) -> torch.Tensor:
        m = mag if self.linear else binade_scale(mag)
        r = (m * self.b(self.u, ndim)).add_(self.b(self.he, ndim))
        if self.info.name in self.run.relu_fed:
            self.n_stores += 1
            self.last_store = r.clone()  # rules add to the result in place
        return r

    def positive_store_bound(self, name: str, x: Interval) -> torch.Tensor | None:
        """A bound of ``|relu(y^) - relu(y)|`` for this relu's input ``name``, when its
        producer (or output 0 of it, through a getitem) recorded the error of its value
        before the final rounding (``_Run.pre_store``, X >= |z^ - y|; z^ the computed value
        before it is stored, y^ = fl(z^) what is stored) and the edge has no cast; else None.

        Rounding to nearest keeps the sign: fl(z) <= 0 for z <= 0. So, exactly,
        ``relu(fl(z^)) - relu(z^) = [z^ > 0] (fl(z^) - z^)``, and

            |relu(y^) - relu(y)| <= [z^ > 0] |fl(z^) - z^| + |relu(z^) - relu(y)|
                                 <= u B(max(hi + X, 0)) + eta/2 + X,

        0 where hi + X <= 0 (z^ and y both <= 0). Only the positive side of the range pays
        the storage rounding, where the producer's own bound pays u B(max(|lo|, |hi|)) (a
        batch norm before a relu: half of it on the CNN example's first block)."""
        if self.run.local_only:
            return None
        pname = self.info.producers.get(name)
        if pname is None:
            return None
        prod = self.run.ba.nodes[pname]
        src = pname
        if prod.kind == "getitem":
            if prod.node.args[1] != 0:
                return None
            src = prod.producers["self"]
        X = self.run.pre_store.get(src)
        if X is None or self._cast_params(prod) is not None:
            return None
        u, he = self.run.fvec[src][0], self.run.fvec[src][1]
        nd = len(x.shape)
        top = x.hi.unsqueeze(0) + X  # z^ <= y + |z^ - y|
        st = (binade_scale(top.clamp(min=0)) * self.b(u, nd)).add_(self.b(he, nd))
        return torch.where(top <= 0, torch.zeros_like(st), st.add_(X))

    def int_to_format(self, mag: torch.Tensor) -> torch.Tensor:
        nd = mag.dim()
        m = mag.unsqueeze(0)
        u = self.b(torch.tensor([f.storage.u for f in self._fmts], dtype=F64), nd)
        top = self.b(torch.tensor([f.storage.max for f in self._fmts], dtype=F64), nd)
        c = torch.where(m * u <= 1.0, torch.zeros_like(m * u), u * m)
        return torch.where(m > top, torch.full_like(c, INF), c)

    def _cast_params(self, prod: NodeInfo):
        """(u_c, he_c) per configuration for reading ``prod`` here, or None if exact."""
        src = self.run.src_format(prod)
        u = torch.zeros(self.F, dtype=F64)
        he = torch.zeros(self.F, dtype=F64)
        any_cast = False
        for c, f in enumerate(self._fmts):
            st = f.storage
            if src is None or self.run.always_cast(prod, self.info) or not contains(st, src if isinstance(src, Format) else src[c]):
                u[c], he[c] = st.u, st.eta / 2
                any_cast = True
        return (u, he) if any_cast else None

    def cast_point(self, name: str):
        """(u_c, he_c) of the cast of an exactly known input (a weight) into this node's
        format, or None; a weight beyond the format's max makes the format inadmissible."""
        prod = self.run.ba.nodes[self.info.producers[name]]
        cp = self._cast_params(prod)
        if cp is not None and prod.primary is not None:
            self.run.check_cast(self.info, _finite_absmax(prod.primary), cp[0])
        return cp

    def point_delta(self, name: str) -> torch.Tensor | None:
        """``fl(v) - v`` exactly, per configuration ``(F, *shape)`` (zero where this edge does
        not cast), for an input known as one value (a weight), when the run asks for exact
        weight roundings (``run_errors(exact_weights=True)``); None otherwise. The rounding
        is the conversion PyTorch applies (``Tensor.to``, as ``model.to(dtype)`` and
        certifier.amp do), checked against the model's ``u |v| + eta/2``. The caller has
        checked the cast's range (cast_point)."""
        if not self.run.exact_weights:
            return None
        pname = self.info.producers.get(name)
        if pname is None:
            return None
        prod = self.run.ba.nodes[pname]
        iv = prod.primary
        cp = self._cast_params(prod)
        if cp is None or iv is None or not iv.is_point or not iv.is_float:
            return None
        v64 = iv.value.to(F64)
        out = torch.zeros((self.F, *iv.shape), dtype=F64)
        for c, f in enumerate(self._fmts):
            u, he = float(cp[0][c]), float(cp[1][c])
            if u == 0.0:
                continue  # no cast on this edge in this configuration
            d = iv.cached("rounding:" + f.storage.name, lambda t, st=f.storage: _rounding_of(t, st))
            if d is None or bool((d.abs() > u * v64.abs() + he).any()):
                return None
            out[c] = d
        return out

    def err_or_cast(self, name: str):
        """(error, None), or (None, (u_c, he_c)) when the input itself is exact and only its
        cast into this node's format errs: then ``|dx| <= u_c |x| + he_c`` with |x| the input's
        interval magnitude (``fmag``), which a rule may apply in closed form instead of
        materialising an ``(F, *shape)`` tensor (the cast's overflow is checked here)."""
        pname = self.info.producers.get(name)
        if pname is None:
            return None, None
        prod = self.run.ba.nodes[pname]
        iv = prod.primary
        if iv is None or not iv.is_float or self.run.get_err(pname, self.info) is not None or not (self.linear or iv.is_point):
            # NB: an exact input that is not one known value (the model's float input) gets
            # its cast as a tensor, bounded per element by its binade (see store)
            return self.err(name), None
        cp = self._cast_params(prod)
        if cp is not None:
            self.run.check_cast(self.info, fmag(iv).unsqueeze(0), cp[0])
        return None, cp

    def rel(self, name: str):
        """(R, A) with ``|x^ - x| <= R |x| + A`` for input ``name`` as read here (its cast on
        this edge included), per configuration, or None when no relative bound is known.
        An exactly computed float input has (0, 0) before its cast."""
        pname = self.info.producers.get(name)
        if pname is None or self.run.local_only:
            return None
        return self._rel_from(pname)

    def _rel_from(self, pname: str):
        prod = self.run.ba.nodes[pname]
        r = self.run.rels.get(pname)
        if r is None:
            iv = prod.primary
            exact = prod.kind in ("param", "buffer", "constant", "input") or (pname in self.run.errs and self.run.errs[pname] is None)
            if iv is None or not iv.is_float or not exact:
                return None
            z = torch.zeros((self.F,) + (1,) * len(iv.shape), dtype=F64)
            r = (z, z)
        R, A = r
        cp = self._cast_params(self.run.ba.nodes[pname])
        if cp is None:
            return R, A
        # rounding on the edge: x~ = x^ (1 + d) + h, |d| <= u_c, |h| <= he_c
        nd = R.dim() - 1
        u, he = self.b(cp[0], nd), self.b(cp[1], nd)
        return R * (1 + u) + u, A * (1 + u) + he

    def err(self, name: str) -> torch.Tensor | None:
        if name in self._errs:
            return self._errs[name]
        e = self._err(name)
        self._errs[name] = e
        return e

    def upstream(self, node: str):
        """(interval, error, relative bound or None) of graph value ``node``, read as a
        float input of this node would be (its cast into this node's format included).
        Infinite where its error is no longer held."""
        prod = self.run.ba.nodes.get(node)
        if prod is None or prod.primary is None or not prod.primary.is_float:
            return None, None, None
        held = node in self.run.errs or prod.kind in ("param", "buffer", "constant", "input")
        if not (self.run.local_only or held):
            return prod.primary, _inf_like(prod.primary, self.F), None
        return prod.primary, self._err_from(node, ""), None if self.run.local_only else self._rel_from(node)

    def _err(self, name: str) -> torch.Tensor | None:
        pname = self.info.producers.get(name)
        if pname is None:
            return None
        return self._err_from(pname, name)

    def _err_from(self, pname: str, name: str) -> torch.Tensor | None:
        prod = self.run.ba.nodes[pname]
        iv = prod.primary
        e = self.run.get_err(pname, self.info)
        if iv is not None and not iv.is_float and iv.dtype != torch.bool and name.split(".")[0] not in _INDEX_ARGS and (
            self.info.is_float or any(self.run.ba.nodes[p].is_float for p in self.info.producers.values())
        ):
            # An integer read as a value next to floats (arithmetic, cat, a comparison, a
            # where branch: type promotion) is converted to the run's format by the kernel
            # (bf16: 257 -> 256); the exact semantics keep it.
            c = self.int_to_format(fmag(iv))
            return c if e is None else e + c
        if iv is None or not iv.is_float:
            return e
        cp = self._cast_params(prod)
        if cp is None:
            return e
        u, he = cp
        m = fmag(iv).unsqueeze(0)
        nd = len(iv.shape)
        mag = m if e is None else m + e
        ce = cast_bound(iv, mag, e, self.b(u, nd), self.b(he, nd), linear=self.linear)
        self.run.check_cast(self.info, mag, u)
        out = ce if e is None else e + ce
        ex = exact_infinite(iv)
        no_inf = [c for c, f in enumerate(self._fmts) if float(u[c]) > 0 and f.storage.name == "fp8_e4m3"]
        if no_inf and ex is not None and bool(ex.any()):
            # an infinity (or a mask marker) cast into fp8_e4m3, which has none, is NaN
            out = out.expand((self.F, *iv.shape)).clone()
            for c in no_inf:
                out[c] = torch.where(ex, INF, out[c])
                f = self._fmts[c]
                ov = Overflow(self.info.name, self.info.layer, f"cast into {self.info.op}", INF, f.storage.max, f.name, "an infinity or mask marker has no fp8_e4m3 value")
                if self.run.overflow[c] is None:
                    self.run.overflow[c] = ov
                self.run.overflows[c].append(ov)
        return out


def cast_bound(iv: Interval, mag: torch.Tensor, e: torch.Tensor | None, u, he, linear: bool = False) -> torch.Tensor:
    """Bound on casting a value of ``iv`` known up to ``e`` (None: exact), of magnitude up
    to ``mag`` (``fmag(iv) + e``), into a format with unit roundoff ``u`` and half subnormal
    spacing ``he`` (floats, or tensors broadcasting against ``mag``): ``cast_error`` (or the
    linear ``u mag + he``), and 0 where the cast is exact: an exact 0 (or infinity: fmag
    counts it as 0), and an exactly known integer the format holds (|v| <= 2^p: a mask of
    ones, a position count). Shared by the forward pass and certifier.adjoint's edge casts."""
    ce = u * mag + he if linear else cast_error(mag, u, he, exact=e is None)
    ce = torch.where(mag == 0, torch.zeros_like(ce), ce)
    if e is None or not bool(e.any()):
        known = iv.cached("known_integers", _known_integers)
        if known is not None:
            fits = known & (iv.lo.abs() <= 1.0 / u)
            ce = torch.where(fits, torch.zeros_like(ce), ce)
    return ce


def _rounding_of(iv: Interval, st: Format) -> torch.Tensor | None:
    """``fl(v) - v`` for the known value of ``iv`` converted to storage format ``st`` by
    ``Tensor.to`` (exact in float64: both are float32 / float64 values), or None when the
    format has no dtype here or the result is not finite."""
    if st.torch_dtype is None:
        return None
    v = iv.value
    try:
        r = v.to(st.torch_dtype).to(v.dtype)
    except (RuntimeError, TypeError):
        return None
    if not bool(torch.isfinite(r).all()):
        return None
    return r.to(F64) - v.to(F64)


def _known_integers(iv: Interval) -> torch.Tensor | None:
    """Where an interval holds one integer exactly (lo == hi, integral); None if nowhere."""
    k = (iv.lo == iv.hi) & (iv.lo == torch.round(iv.lo))
    return k if bool(k.any()) else None


class _Run:
    def __init__(self, ba: BoundsAnalysis, assignments: list[Mapping[str, str]], local_only: bool) -> None:
        self.ba = ba
        self.F = len(assignments)
        self.local_only = local_only
        self.assignments = assignments
        self.errs: dict[str, object] = {}
        #: charge a known operand's cast by its exact rounding (see _Ctx.point_delta)
        self.exact_weights = False
        self.fvec: dict[str, tuple] = {}
        self.node_fmts: dict[str, list[Format]] = {}
        self.overflow: list[Overflow | None] = [None] * self.F
        self.overflows: list[list[Overflow]] = [[] for _ in range(self.F)]
        for name, info in ba.nodes.items():
            fmts = [FORMATS[a.get(info.layer, a.get("*", "fp32"))] for a in assignments]
            self.node_fmts[name] = fmts
            st = [f.storage for f in fmts]
            acc = [accumulation_format(f) for f in fmts]
            self.fvec[name] = (
                torch.tensor([s.u for s in st], dtype=F64),
                torch.tensor([s.eta / 2 for s in st], dtype=F64),
                torch.tensor([a.u for a in acc], dtype=F64),
                torch.tensor([a.eta / 2 for a in acc], dtype=F64),
                torch.tensor([f.mul_u for f in fmts], dtype=F64),
                fmts,
                torch.tensor([f.mul_eta for f in fmts], dtype=F64),
            )
        cons = ba.consumers()
        #: node -> (R, A): a *relative* error bound |x^ - x| <= R |x| + A, kept beside the
        #: absolute one by the few error models that can give it (exp, sums of non-negative
        #: terms; see ``propagate_rel``), for a quotient by a positive value that comes close
        #: to 0 relative to its absolute error (naive softmax: sum of exps).
        self.rels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.remaining = {n: len(c) for n, c in cons.items()}
        #: node -> its error is inf everywhere, in every configuration (every output of a
        #: multi-output node); set where an error is made unbounded, else found by a scan.
        self.inf_flags: dict[str, bool] = {}
        self.keep = set(ba.outputs)
        #: nodes a relu reads (directly or as output 0 through a getitem), and for those
        #: whose error model ends in one rounding of the stored value (``final_store``), their
        #: error before that rounding (see _Ctx.positive_store_bound)
        self.relu_fed: set[str] = set()
        for info in ba.nodes.values():
            if info.op == "relu" and "self" in info.producers:
                p = ba.nodes[info.producers["self"]]
                self.relu_fed.add(p.producers["self"] if p.kind == "getitem" and p.node.args[1] == 0 else p.name)
        self.pre_store: dict[str, torch.Tensor] = {}

    def src_format(self, prod: NodeInfo):
        """The format a producer's value is held in: per configuration for call nodes,
        the tensor's dtype for parameters and constants, None (exact) for domain inputs."""
        if prod.kind in ("param", "buffer", "constant") or (prod.kind != "input" and prod.is_point):
            # NB: an exactly known value (a parameter, or a view/permute of one) is held in its
            # own dtype until a node reads it; that node charges the cast to its format.
            iv = prod.primary
            return dtype_format(iv.dtype) if iv is not None else None
        if prod.kind == "input":
            return None
        return [f.storage for f in self.node_fmts[prod.name]]

    def always_cast(self, prod: NodeInfo, consumer: NodeInfo) -> bool:
        """In the local-only model every float input from another layer is charged a cast."""
        return self.local_only and prod.kind not in ("param", "buffer", "constant") and not prod.is_point and prod.layer != consumer.layer

    def get_err(self, pname: str, consumer: NodeInfo):
        prod = self.ba.nodes[pname]
        if self.local_only and prod.layer == consumer.layer and prod.kind not in ("input",):
            return None if prod.kind != "getitem" else None
        if self.local_only:
            return None
        e = self.errs.get(pname)
        return e

    def check_cast(self, consumer: NodeInfo, mag: torch.Tensor, u: torch.Tensor) -> None:
        vmax = mag.reshape(mag.shape[0], -1).amax(1) if mag.numel() else torch.zeros(mag.shape[0], dtype=F64)
        for c, f in enumerate(self.node_fmts[consumer.name]):
            if u[c] == 0:
                continue
            v = float(vmax[c if vmax.shape[0] > 1 else 0])
            if v > f.storage.max:
                ov = Overflow(consumer.name, consumer.layer, f"cast into {consumer.op}", v, f.storage.max, f.name)
                if self.overflow[c] is None:  # the first overflow, as check_overflow keeps it
                    self.overflow[c] = ov
                self.overflows[c].append(ov)

    def check_overflow(self, info: NodeInfo, iv: Interval, e: torch.Tensor, internal: float) -> torch.Tensor:
        m = fmag(iv).unsqueeze(0)
        tot = m + e
        flat = tot.reshape(self.F, -1)
        vmax = flat.amax(1) if flat.shape[1] else torch.zeros(self.F, dtype=F64)
        ex = exact_infinite(iv)
        has_inf = ex is not None and bool(ex.any())
        cloned = False
        for c, f in enumerate(self.node_fmts[info.name]):
            st = f.storage
            v = max(float(vmax[c]), internal)
            bad = not (v <= st.max)
            if has_inf and st.name == "fp8_e4m3":
                bad, v = True, INF
            if bad:
                detail = None
                if not math.isfinite(v) and info.result is not None:
                    detail = getattr(info.result.error, "unbounded_reason", None)
                ov = Overflow(info.name, info.layer, info.op, v, st.max, st.name, detail)
                if self.overflow[c] is None:
                    self.overflow[c] = ov
                self.overflows[c].append(ov)
                if not cloned:  # never write into a tensor another node may share
                    e, cloned = e.clone(), True
                e[c] = INF
        return e

    def failed(self, info: NodeInfo, exc: Exception) -> None:
        """An error model raised: the node's error is unbounded in every configuration, the
        reason goes to each configuration's overflows and (once) to the analysis's list of
        unsupported nodes."""
        why = f"error model failed: {failclosed.describe(exc)}"
        for c, f in enumerate(self.node_fmts[info.name]):
            ov = Overflow(info.name, info.layer, info.op, INF, f.storage.max, f.name, why)
            if self.overflow[c] is None:
                self.overflow[c] = ov
            self.overflows[c].append(ov)
        if not any(u.get("node") == info.name for u in self.ba.unsupported):
            self.ba.unsupported.append({"node": info.name, "op": str(info.node.target), "module": self.ba.captured.module_of.get(info.name, ""), "reason": why})

    def all_inputs_unbounded(self, info: NodeInfo) -> bool:
        """True when some float input carries an error and, in every configuration, each
        erroneous float input is infinite everywhere."""
        if self.local_only:
            return False
        seen = False
        for p in info.producers.values():
            e = self.errs.get(p)
            if isinstance(e, tuple):
                e = e[0]
            if not isinstance(e, torch.Tensor) or not self.ba.nodes[p].is_float:
                continue
            flag = self.inf_flags.get(p)
            if flag is None:
                # NB: errors are >= 0 and NaN-free (_clean), so "inf everywhere" is min == inf
                # (one reduction, no mask of the tensor's size).
                flag = bool(e.amin() == INF) if e.numel() else False
                self.inf_flags[p] = flag
            if not flag:
                return False
            seen = True
        return seen

    def release(self, info: NodeInfo) -> None:
        for p in info.producers.values():
            self.remaining[p] -= 1
            if self.remaining[p] <= 0 and p not in self.keep:
                self.errs.pop(p, None)
                self.rels.pop(p, None)
                self.pre_store.pop(p, None)


def _finite_absmax(iv: Interval) -> torch.Tensor:
    """``(1,)``: the largest finite |value| of a tensor (an exact -inf mask stays -inf in every
    format: no overflow), computed in the tensor's own dtype and cached on the interval."""

    def fn(iv: Interval) -> torch.Tensor:
        v = iv.value if iv.is_point else iv.mag
        if v is None or v.numel() == 0 or not v.is_floating_point():
            return torch.zeros(1, dtype=F64)
        v = v.detach()
        try:
            lo, hi = torch.aminmax(v)  # one pass, no temporary of the tensor's size
        except (RuntimeError, NotImplementedError):  # dtypes without aminmax (fp8)
            v = v.to(F64)
            lo, hi = torch.aminmax(v)
        m = torch.maximum(-lo, hi)
        if not bool(torch.isfinite(m)):  # an infinite entry (a mask): the largest finite one
            a = v.abs()
            m = a.masked_fill(torch.isinf(a), 0).max()
        return m.to(F64).reshape(1)

    return iv.cached("finite_absmax", fn)  # type: ignore[return-value]


def _clean(e: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(e, nan=INF, posinf=INF)


def run_errors(
    ba: BoundsAnalysis,
    assignments: list[Mapping[str, str]],
    *,
    local_only: bool = False,
    keep_nodes: bool = True,
    keep_errs: bool = False,
    progress=None,
    override: Mapping[str, torch.Tensor] | None = None,
    pre_override: dict[str, torch.Tensor] | None = None,
    exact_weights: bool = False,
) -> ErrorResult:
    """Propagate rounding errors for each assignment (layer -> format name; key "*" = default).

    ``local_only``: every node sees exact inputs (plus the casts charged at layer boundaries):
    the result per node is its local rounding error Delta_i for the linear allocation model.

    ``override`` (one configuration only): node -> another valid bound of ``|y^ - y|`` for
    its (first) output, e.g. the adjoint pass's; the smaller of the two is what its consumers
    read. The bound computed here before that minimum (which, unlike the override, also
    bounds ``|f(x^) - f(x)|``: it is the propagated part plus the node's own rounding) is
    stored in ``pre_override``.

    ``exact_weights``: a known operand's cast into a linear node's format is charged by its
    exact rounding with signs, ``|op(c, dW)| + op(r, |dW|)`` over the other operand's box
    (center c, radius r), instead of ``u |W| |x| + eta/2`` (certifier.adjoint asks for it
    where its pass runs: both are sound, this one costs a few more products per node).
    """
    if override and len(assignments) != 1:
        raise ValueError("override needs exactly one configuration")
    run = _Run(ba, assignments, local_only)
    run.exact_weights = exact_weights and not local_only
    if keep_errs:
        run.keep = set(ba.nodes)
    F = run.F
    node_max: dict[str, list[float]] = {}
    names = list(ba.nodes)
    for k, name in enumerate(names):
        if progress is not None and k % 50 == 0:
            progress(k, len(names))
        info = ba.nodes[name]
        if info.kind in ("param", "buffer", "constant", "input"):
            continue
        if info.kind == "getitem":
            src = info.producers["self"]
            v = run.errs.get(src)
            idx = info.node.args[1]
            e = v[idx] if isinstance(v, (tuple, list)) else v  # type: ignore[index]
            if run.inf_flags.get(src):
                run.inf_flags[name] = True
            if override and name in override and isinstance(e, torch.Tensor):
                if pre_override is not None:
                    pre_override[name] = e[0]
                e = torch.minimum(e, override[name].to(F64).expand(e.shape[1:]).unsqueeze(0))
            if not local_only:
                run.errs[name] = e
            if keep_nodes and isinstance(e, torch.Tensor):
                node_max[name] = _maxes(e, F)
            run.release(info)
            continue
        res = info.result
        out = info.out
        if info.is_point and info.unsupported is None and all(ba.nodes[p].is_point for p in info.producers.values()):
            # Exactly known values (views of parameters, folded constants) carry no error of
            # their own; whoever reads them charges the cast (see _Ctx.err / cast_point).
            # NB: only when computed from known values: a point computed from a box (a
            # comparison decided on the exact box, a *_like constant) still goes through its
            # error model (the comparison can flip under rounding; the constant is rounded).
            run.errs[name] = None
            run.release(info)
            continue
        unbounded = False
        if info.unsupported is not None:
            e, unbounded = _inf_like(out, F), True
        elif res is None:
            e = None  # folded from known inputs: exact
        elif res.error is None:
            # No error model: exact only if every input is exact (an error tensor of zeros,
            # say an integer computed exactly from exact ones, is exact).
            ctx = _Ctx(run, info)
            errs_in = [ctx.err(a) for a in info.producers]
            anyerr = any(t is not None and not bool((t == 0).all()) for t in errs_in)
            e, unbounded = (_inf_like(out, F), True) if anyerr else (None, False)
        elif run.all_inputs_unbounded(info):
            # Every configuration already has an unbounded error in every erroneous input:
            # the output's error is unbounded too (sound; skips the work).
            e, unbounded = _inf_like(out, F), True
        else:
            ctx = _Ctx(run, info)
            try:
                e = res.error.propagate(ctx)
            except Exception as exc:  # noqa: BLE001 - fail closed (certifier.failclosed)
                if failclosed.reraise():
                    raise
                run.failed(info, exc)
                e = _inf_like(out, F)
                unbounded = True
            if isinstance(e, list):
                e = tuple(e)
            if not unbounded and ctx.n_stores == 1 and getattr(res.error, "final_store", False) and not local_only:
                first = e[0] if isinstance(e, tuple) else e
                if isinstance(first, torch.Tensor):
                    # e = X + s, s the final rounding: X bounds the value before it (the
                    # subtraction's own rounding covered: 2^-52 s)
                    sto = ctx.last_store
                    run.pre_store[name] = _clean((first - sto).clamp_(min=0).mul_(1 + 2.0**-50).add_(sto * 2.0**-52))
            if unbounded:
                pass
            elif isinstance(e, tuple):
                outs = out if isinstance(out, tuple) else (out,)
                e = tuple(None if t is None else _post(run, info, o, t, res, i == 0, F) for i, (o, t) in enumerate(zip(outs, e)))
            elif e is not None:
                prim = out[0] if isinstance(out, tuple) else out
                e = _post(run, info, prim, e, res, not isinstance(res.error, ShapeError), F)
                rel = getattr(res.error, "propagate_rel", None)
                try:
                    r = None if (rel is None or local_only) else rel(ctx)
                except Exception:  # noqa: BLE001 - optional: the absolute bound stands alone
                    if failclosed.reraise():
                        raise
                    r = None
                if r is not None:
                    # NB: never finite where the absolute bound is not (an overflow, an
                    # unbounded input).
                    bad = ~torch.isfinite(e)
                    if bool(bad.any()):
                        R, A = (t.expand_as(e) for t in r)
                        r = (torch.where(bad, INF, R), torch.where(bad, INF, A))
                    run.rels[name] = r
        if override and name in override and e is not None:
            first = e[0] if isinstance(e, tuple) else e
            if isinstance(first, torch.Tensor):
                o = override[name].to(F64).expand(first.shape[1:]).unsqueeze(0)
                if pre_override is not None:
                    pre_override[name] = first[0]
                first = torch.minimum(first, o)
                e = (first, *e[1:]) if isinstance(e, tuple) else first
        run.errs[name] = e
        if unbounded:  # known without scanning it (all_inputs_unbounded), every output
            run.inf_flags[name] = True
        if keep_nodes:
            t = e[0] if isinstance(e, tuple) else e
            if isinstance(t, torch.Tensor):
                node_max[name] = _maxes(t, F)
        run.release(info)
    bounds = [0.0] * F
    out_err: dict[str, torch.Tensor] = {}
    for o in ba.outputs:
        iv = ba.nodes[o].primary
        if iv is None or not iv.is_float:
            continue
        e = run.errs.get(o)
        if isinstance(e, tuple):
            e = e[0]
        if e is None:
            continue
        out_err[o] = e
        m = _maxes(e, F)
        bounds = [max(a, b) for a, b in zip(bounds, m)]
    for c in range(F):
        if run.overflow[c] is not None:
            bounds[c] = INF
    return ErrorResult(
        configs=[str(a.get("*", "mixed")) for a in assignments],
        bound=bounds,
        overflow=run.overflow,
        overflows=run.overflows,
        node_max=node_max,
        output_err=out_err,
        method=["forward"] * F,
        node_err=run.errs if keep_errs else {},
    )


def _maxes(e: torch.Tensor, F: int) -> list[float]:
    if e.numel() == 0:
        return [0.0] * F
    # NB: a reduction over the trailing dims, not a reshape: an expanded (stride-0) error
    # such as _inf_like's is read in place instead of being materialised.
    m = e.amax(dim=tuple(range(1, e.dim()))) if e.dim() > 1 else e
    if m.shape[0] != F:
        m = m.expand(F)
    return [float(x) if x == x else INF for x in m]


def _inf_like(out, F: int):
    """An unbounded error for every element and configuration: one inf per configuration,
    expanded (stride 0) to the output's shape. Readers never write into an error tensor
    (errors are shared between consumers), so the expansion is never materialised unless a
    reader computes with it; a model that is unbounded from an early node on (BERT-base,
    ResNet-50 over their full domains) no longer allocates a full tensor per node."""

    def one(o: Interval) -> torch.Tensor:
        return torch.full((F,) + (1,) * len(o.shape), INF, dtype=F64).expand(F, *o.shape)

    if isinstance(out, tuple):
        return tuple(None if o is None else one(o) for o in out)
    if out is None:
        return None
    return one(out)


def _post(run: _Run, info: NodeInfo, iv: Interval | None, e: torch.Tensor, res, check: bool, F: int) -> torch.Tensor:
    if iv is None:
        return e
    if e.shape[0] != F or tuple(e.shape[1:]) != tuple(iv.shape):
        e = e.expand((F, *iv.shape)) if e.dim() == len(iv.shape) + 1 else e
    e = _clean(e)
    if iv.is_float:
        ex = exact_infinite(iv)
        if ex is not None and bool(ex.any()):
            # the computed value is the same infinity (or, for a mask marker, beyond 2^64 of
            # the same sign) when the inputs' errors there stay within MARKER_SLACK
            e = torch.where(ex.unsqueeze(0) & (e <= MARKER_SLACK), torch.zeros_like(e), e)
        if check:
            e = run.check_overflow(info, iv, e, float(res.internal_max))
    return e
