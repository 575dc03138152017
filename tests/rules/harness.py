"""Rule soundness by sampling (DESIGN 7): the harness every tests/rules/test_<family>.py uses.

Given an op (a small ``nn.Module`` or a function of tensors), the boxes of its inputs and any
constant tensors (weights), :func:`check_rule`

1. exports the one-op model exactly as the product does (``certifier.capture.capture``:
   ``torch.export`` + ``run_decompositions``; optionally without decompositions, to reach the
   rules of ops that only appear in undecomposed graphs), runs ``certifier.walker.analyze_bounds``
   and finds the node(s) of the target ATen op;
2. for every target node, treats the node in isolation under the rule's own contract: its
   float tensor arguments range over the intervals the rule was given (the producers'
   intervals), its constant arguments are fixed, and the op itself is evaluated in float64
   (the "exact" value). Points are drawn in those boxes: all-lo and all-hi corners, random
   corner patterns, points next to the op's critical points (the kink of relu, the peaks of
   GELU's derivatives, ...) and uniform points. For each point it checks

   (a) **range**: every output (all outputs of a multi-output op) lies in the node's interval;
   (b) **Lipschitz**, per float argument ``a`` with a non-constant producer (a missing entry
       in ``RuleResult.lipschitz`` is read as 0, as the walker reads it): pairs ``x, y`` that
       differ only in ``a`` (far pairs: uniform and mirrored points; near pairs: steps of
       1e-2 and 1e-6 of the box width along the sign of the worst Jacobian row), requiring
       ``max|f(x) - f(y)| <= L max|x_a - y_a| (1 + 1e-9) + tiny`` where ``tiny`` covers the
       float64 evaluation of f only; and the derivative form ``||J_a(x)||_inf <= L``
       (the limit of the near pairs, from autograd);
   (c) **curvature** (C^2 ops): ``1/2 max_i |D^2 f_i(x)[h, h]| <= kappa`` for sign vectors
       ``h`` (``||h||_inf = 1``, joint over every float argument), with ``D^2 f[h, h]``
       computed exactly by float64 forward-mode autograd (a jvp of a jvp);

3. (d) **rounding error**: runs the whole module cast to each format (``module.to(dtype)``,
   float inputs cast too; the CPU kernels accumulate in fp32) and in float64 on sampled model
   inputs, and checks ``|computed - exact| <= certifier.rounding.run_errors(...).output_err``
   elementwise for every float output.

Every comparison allows only for the float64 rounding of the reference computation itself
(a few ulps of the values compared), never for a looser rule.

Speed (the whole suite must stay around a minute on two cores): the checks on one node are
batched with ``torch.vmap`` (a loop where an op has no batching rule), autograd runs in float64
(forward-over-forward or reverse-over-reverse for D^2), and :class:`Suite` exports all the
one-op cases of a test file as *one* model (one submodule per case), because torch.export +
run_decompositions costs ~0.5 s per call whatever the graph. Each case is then analysed with
its own boxes and only its own nodes are checked.

Per-element boxes (a tensor ``lo``/``hi``) are realised by feeding ``lo + (hi - lo) * t`` with
``t`` in [0, 1] to the op (a mul and an add by constants, whose own rules are tight up to the
2^-48 widening); the target node then sees the elementwise box.

Deliberately wrong rules are injected with :func:`wrong_rule`, which wraps the registered
rule of an op and transforms its result (``halve_lipschitz``, ``shrink_range``, ...): the
harness must then raise ``AssertionError`` (tests/rules/test_harness.py shows it does).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch

from certifier.capture import Captured, capture
from certifier.interval import Interval, as_markers
from certifier.loader import InputSpec, LoadedModel
from certifier.rounding import run_errors
from certifier.validate import abs_error
from certifier.walker import BoundsAnalysis, NodeInfo, _bind, analyze_bounds
from curvature_rules import RuleInput, RuleResult, registry, rmsnorm

F64 = torch.float64
EPS64 = 2.0**-52
REL_TOL = 1e-9  # relative slack on L and kappa (the rules round their bounds up far more)
FORMAT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Box:
    """The domain of one model input: a float box (scalar or per-element bounds) or an
    inclusive integer id range (``dtype`` integer) or a boolean input (``dtype`` bool)."""

    shape: tuple[int, ...]
    lo: float | torch.Tensor
    hi: float | torch.Tensor
    dtype: torch.dtype = torch.float32

    @property
    def per_element(self) -> bool:
        return isinstance(self.lo, torch.Tensor) or isinstance(self.hi, torch.Tensor)

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    def lo_t(self) -> torch.Tensor:
        return torch.as_tensor(self.lo, dtype=F64).expand(self.shape).clone()

    def hi_t(self) -> torch.Tensor:
        return torch.as_tensor(self.hi, dtype=F64).expand(self.shape).clone()

    def key(self) -> tuple:
        vals = (float(self.lo), float(self.hi)) if not self.per_element else (_digest(self.lo_t()), _digest(self.hi_t()))
        return (self.shape, str(self.dtype), self.per_element, vals if self.per_element else None)


def box(shape: Sequence[int], lo: float | torch.Tensor, hi: float | torch.Tensor, dtype: torch.dtype = torch.float32) -> Box:
    return Box(tuple(int(s) for s in shape), lo, hi, dtype)


def ids(shape: Sequence[int], lo: int, hi: int, dtype: torch.dtype = torch.int64) -> Box:
    """Integer ids in the inclusive range [lo, hi]."""
    return Box(tuple(int(s) for s in shape), float(lo), float(hi), dtype)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().to(F64).contiguous().numpy().tobytes()).hexdigest()


class OpModule(torch.nn.Module):
    """``fn(*inputs, **consts)`` as a module; constants become buffers so that
    ``module.to(dtype)`` casts them like the weights of a real model."""

    def __init__(self, fn: Callable, consts: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.const_names = list((consts or {}).keys())
        for k, v in (consts or {}).items():
            self.register_buffer(k, v.clone())

    def forward(self, *xs):
        return self.fn(*xs, **{k: getattr(self, k) for k in self.const_names})


class _PerElement(torch.nn.Module):
    """Feeds ``lo + w * t`` (t in [0, 1]) to the inner module for per-element boxes."""

    def __init__(self, inner: torch.nn.Module, boxes: Sequence[Box]) -> None:
        super().__init__()
        self.inner = inner
        self.flags = [b.per_element and b.is_float for b in boxes]
        for i, b in enumerate(boxes):
            if self.flags[i]:
                lo32 = b.lo_t().to(b.dtype)
                w32 = (b.hi_t() - lo32.to(F64)).to(b.dtype)
                self.register_buffer(f"lo{i}", lo32)
                self.register_buffer(f"w{i}", w32)

    def forward(self, *ts):
        xs = [t * getattr(self, f"w{i}") + getattr(self, f"lo{i}") if f else t for i, (t, f) in enumerate(zip(ts, self.flags))]
        return self.inner(*xs)


# ---------------------------------------------------------------------------- capture cache
_CACHE: dict[tuple, tuple[object, torch.nn.Module, Captured]] = {}


_CIA_OPS: set | None = None


def _cia_ops_cached() -> set:
    """torch's list of CompositeImplicitAutograd ops, computed once per process (torch
    recomputes it, ~0.3 s, in every run_decompositions; it only changes when new operators
    are registered, which these tests never do)."""
    global _CIA_OPS
    if _CIA_OPS is None:
        from torch._export.utils import _collect_all_valid_cia_ops

        _CIA_OPS = set(_collect_all_valid_cia_ops())
    return set(_CIA_OPS)


def _capture(loaded: LoadedModel, decompose: bool) -> Captured:
    """certifier.capture.capture, optionally without run_decompositions."""
    import torch.export.decomp_utils as du
    import torch.export.exported_program as xp

    with contextlib.ExitStack() as st:
        for mod in (xp, du):
            if hasattr(mod, "_collect_all_valid_cia_ops"):
                st.enter_context(mock.patch.object(mod, "_collect_all_valid_cia_ops", _cia_ops_cached))
        if not decompose:
            st.enter_context(mock.patch.object(torch.export.ExportedProgram, "run_decompositions", lambda self, *a, **k: self))
        return capture(loaded)


def build(
    op: Callable | torch.nn.Module,
    boxes: Sequence[Box],
    consts: Mapping[str, torch.Tensor] | None,
    decompose: bool,
) -> tuple[torch.nn.Module, Captured, LoadedModel]:
    """The (cached) exported model for ``op`` on inputs of these shapes, and a LoadedModel
    carrying the boxes."""
    ckey = tuple(sorted((k, _digest(v), str(v.dtype), tuple(v.shape)) for k, v in (consts or {}).items()))
    key = (id(op), tuple(b.key() if b.per_element else (b.shape, str(b.dtype)) for b in boxes), ckey, decompose)
    specs = []
    examples = []
    for b in boxes:
        if b.per_element and b.is_float:
            specs.append(InputSpec(b.shape, b.dtype, 0.0, 1.0))
            examples.append(torch.full(b.shape, 0.5, dtype=b.dtype))
        else:
            specs.append(InputSpec(b.shape, b.dtype, float(b.lo), float(b.hi)))
            examples.append(torch.full(b.shape, float(b.lo), dtype=F64).to(b.dtype))
    hit = _CACHE.get(key)
    if hit is not None:
        module, cap = hit[1], hit[2]
    else:
        inner = op if isinstance(op, torch.nn.Module) else OpModule(op, consts)
        if isinstance(op, torch.nn.Module) and consts:
            raise ValueError("pass constants as the module's own parameters or buffers")
        module = _PerElement(inner, boxes) if any(b.per_element and b.is_float for b in boxes) else inner
        module = module.eval()
        loaded0 = LoadedModel(path=Path("rule_case.py"), name="rule_case", module=module, example_inputs=tuple(examples), inputs=specs, source_sha256="")
        cap = _capture(loaded0, decompose)
        _CACHE[key] = (op, module, cap)
    loaded = LoadedModel(path=Path("rule_case.py"), name="rule_case", module=module, example_inputs=tuple(examples), inputs=specs, source_sha256="")
    return module, cap, loaded


# ---------------------------------------------------------------------------- wrong rules
@contextlib.contextmanager
def wrong_rule(op: torch._ops.OpOverload, transform: Callable[[RuleResult], RuleResult]) -> Iterator[None]:
    """Temporarily replace the rule of ``op`` by ``transform(rule(inp))``."""
    orig = registry.lookup(op)
    assert orig is not None, f"no rule for {op}"

    def bad(inp: RuleInput) -> RuleResult:
        return transform(orig(inp))

    with mock.patch.dict(registry._RULES, {op: bad}):
        yield


def halve_lipschitz(res: RuleResult) -> RuleResult:
    return dataclasses.replace(res, lipschitz={k: v / 2 for k, v in res.lipschitz.items()})


def halve_curvature(res: RuleResult) -> RuleResult:
    return dataclasses.replace(res, curvature=res.curvature / 2)


def shrink_range(res: RuleResult, frac: float = 0.1) -> RuleResult:
    """Move both ends of the primary interval inward by ``frac`` of its width."""
    iv = res.primary
    assert iv is not None
    w = iv.hi - iv.lo
    new = Interval(iv.lo + frac * w, iv.hi - frac * w, iv.dtype)
    out = (new, *res.out[1:]) if isinstance(res.out, tuple) else new
    return dataclasses.replace(res, out=out)


def scale_error(res: RuleResult, factor: float = 0.01) -> RuleResult:
    """Scale the rule's rounding-error bound by ``factor``."""
    inner = res.error
    assert inner is not None

    class Scaled:
        def propagate(self, ctx):
            e = inner.propagate(ctx)
            if isinstance(e, tuple):
                return tuple(None if t is None else t * factor for t in e)
            return None if e is None else e * factor

    return dataclasses.replace(res, error=Scaled())


# ---------------------------------------------------------------------------- node evaluation
@dataclass
class _Arg:
    """One tensor argument occurrence of the target node."""

    name: str  # schema name ("self", "tensors.0", ...)
    iv: Interval
    sampled: bool  # float box with a non-constant producer (varies); else fixed
    value: torch.Tensor | None = None  # fixed value (float64 for floats)


@dataclass
class NodeCase:
    """A target node viewed as a function of its argument boxes."""

    info: NodeInfo
    rule_input_args: dict[str, object]
    kwonly: frozenset[str]
    args: dict[str, _Arg]
    op: torch._ops.OpOverload
    fn: Callable | None = None  # a more accurate float64 reference for the op (same signature)
    #: sampled argument -> an earlier one fed by the same graph value (``x * x``): the
    #: range is checked with them tied (the rule may use that relation); the Lipschitz
    #: and curvature claims, per argument, are checked with them sampled independently
    aliases: dict[str, str] = field(default_factory=dict)
    #: sampled argument -> its value as a function of the others, where the rule relies on
    #: that relation (an RMSNorm's rsqrt(mean(x^2) + c) next to x): used with ``aliases``
    derived: dict[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]] = field(default_factory=dict)

    def tie(self, vals: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {n: vals[self.aliases.get(n, n)] for n in vals}
        for n, fn in self.derived.items():
            out[n] = fn(out)
        return out

    @property
    def float_args(self) -> list[str]:
        return [n for n, a in self.args.items() if a.sampled and a.iv.is_float]

    def call(self, vals: Mapping[str, torch.Tensor]) -> object:
        """Evaluate the op in float64 with the given values for the sampled arguments."""
        pos: list[object] = []
        kw: dict[str, object] = {}
        for name, v in self.rule_input_args.items():
            if isinstance(v, Interval):
                v = self._val(name, vals)
            elif isinstance(v, list) and any(isinstance(x, Interval) for x in v):
                v = [self._val(f"{name}.{i}", vals) if isinstance(x, Interval) else x for i, x in enumerate(v)]
            elif name == "dtype" and isinstance(v, torch.dtype) and v.is_floating_point and self.op in _CASTS:
                v = F64  # the exact value of a float cast is the value itself
            (kw.__setitem__(name, v) if name in self.kwonly else pos.append(v))
        return (self.fn or self.op)(*pos, **kw)

    def _val(self, name: str, vals: Mapping[str, torch.Tensor]) -> torch.Tensor:
        a = self.args[name]
        v = vals[name] if a.sampled else a.value
        if self.op in _CREATION and isinstance(v, torch.Tensor):
            v = v.to(a.iv.dtype)  # a *_like op takes its dtype from the argument
        return v  # type: ignore[return-value]


#: Casts: their exact value is the input value (the rounding belongs to the error model).
_CASTS = {torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype}
#: Creation ops hold the constant as written in the graph's dtype (the value the rule claims);
#: its rounding relative to the fp64 reference is the rule's error model (checked by (d)).
_CREATION = {op for op, mod in registry.registered_ops().items() if mod == "curvature_rules.creation"}


def _node_case(ba: BoundsAnalysis, info: NodeInfo, reference: Mapping | None = None) -> NodeCase:
    env = {n: i.out for n, i in ba.nodes.items()}
    args, producers, kwonly = _bind(info.node, env)
    out: dict[str, _Arg] = {}

    def add(name: str, iv: Interval) -> None:
        prod = producers.get(name)
        sampled = prod is not None and not iv.is_point
        val = None
        if not sampled:
            if iv.is_point:
                val = iv.value.to(F64) if iv.is_float else iv.value
            else:  # a box without a producer cannot happen; keep it fixed at lo
                val = iv.lo
        out[name] = _Arg(name, iv, sampled, val)

    for name, v in args.items():
        if isinstance(v, Interval):
            add(name, v)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, Interval):
                    add(f"{name}.{i}", x)
    first: dict[tuple[str, tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for name, a in out.items():
        prod = producers.get(name)
        if a.sampled and prod is not None:
            key = (prod, tuple(a.iv.shape))
            if key in first:
                aliases[name] = first[key]
            else:
                first[key] = name
    derived: dict[str, Callable] = {}
    by_producer = {producers.get(n): n for n, a in out.items() if a.sampled}
    for name, a in out.items():
        pnode = ba.nodes[producers[name]].node if a.sampled and producers.get(name) in ba.nodes else None
        ch = rmsnorm.match(pnode) if pnode is not None else None
        xarg = by_producer.get(ch.x.name) if ch is not None else None
        if ch is not None and xarg is not None and xarg != name:
            nd = len(out[xarg].iv.shape)
            neg = tuple(d - nd for d in ch.dims)  # batched points carry a leading dim
            derived[name] = lambda v, xa=xarg, neg=neg, c=ch.c: torch.rsqrt((v[xa] * v[xa]).mean(neg, keepdim=True) + c)
    return NodeCase(info, args, kwonly, out, info.node.target, (reference or {}).get(info.node.target), aliases, derived)  # type: ignore[arg-type]


def _flat(out: object) -> list[torch.Tensor | None]:
    if isinstance(out, (tuple, list)):
        return [t if isinstance(t, torch.Tensor) else None for t in out]
    return [out if isinstance(out, torch.Tensor) else None]


def _primary(out: object) -> torch.Tensor:
    t = _flat(out)[0]
    assert t is not None
    return t


# ---------------------------------------------------------------------------- sampling
@dataclass
class Sampler:
    gen: torch.Generator
    critical: Mapping[str, Sequence[float]] | Sequence[float]

    def crit_for(self, name: str) -> Sequence[float]:
        if isinstance(self.critical, Mapping):
            return self.critical.get(name, ())
        return self.critical

    def point(self, iv: Interval, k: int, name: str) -> torch.Tensor:
        """The k-th sample in the box ``iv`` (float, int or bool). Degenerate elements
        (lo == hi, e.g. an exact -inf attention mask) keep their value."""
        if iv.is_float:
            fixed = iv.lo == iv.hi
            if bool(fixed.any()):
                z = torch.zeros_like(iv.lo)
                inner = Interval(torch.where(fixed, z, iv.lo), torch.where(fixed, z, iv.hi), iv.dtype)
                return torch.where(fixed, iv.lo, self._point(inner, k, name))
        return self._point(iv, k, name)

    def _point(self, iv: Interval, k: int, name: str) -> torch.Tensor:
        lo, hi = iv.lo, iv.hi
        shape = lo.shape
        if iv.dtype == torch.bool:
            bits = torch.randint(0, 2, shape, generator=self.gen).to(F64)
            return torch.where(bits > 0, hi, lo).to(torch.bool)
        if not iv.is_float:
            r = torch.rand(shape, generator=self.gen, dtype=F64)
            v = torch.floor(lo + (hi - lo + 1) * r).clamp(max=hi)
            if k == 0:
                v = lo.clone()
            elif k == 1:
                v = hi.clone()
            return v.to(iv.dtype)
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all(), f"argument {name} has an unbounded box"
        crit = [c for c in self.crit_for(name)]
        if k == 0:
            return lo.clone()
        if k == 1:
            return hi.clone()
        if k in (2, 3):
            bits = torch.randint(0, 2, shape, generator=self.gen).to(F64)
            return torch.where(bits > 0, hi, lo)
        if k == 4 and lo.numel() > 1:  # alternating corners
            alt = (torch.arange(lo.numel()) % 2).reshape(shape).to(F64)
            return torch.where(alt > 0, hi, lo)
        u = torch.rand(shape, generator=self.gen, dtype=F64)
        x = lo + (hi - lo) * u
        if crit and k % 3 == 0:
            # Every element near a critical point (clipped to the box), at several scales.
            c = torch.tensor(crit, dtype=F64)[torch.randint(0, len(crit), shape, generator=self.gen)]
            scale = 10.0 ** torch.randint(-9, 0, shape, generator=self.gen).to(F64)
            d = (torch.rand(shape, generator=self.gen, dtype=F64) * 2 - 1) * scale
            x = torch.minimum(torch.maximum(c + d, lo), hi)
        elif crit and k % 3 == 1:
            # Some elements at a critical point, the rest uniform.
            c = torch.tensor(crit, dtype=F64)[torch.randint(0, len(crit), shape, generator=self.gen)]
            mask = torch.rand(shape, generator=self.gen) < 0.5
            x = torch.where(mask, torch.minimum(torch.maximum(c, lo), hi), x)
        return x


def _seed(*parts: object) -> int:
    return int(hashlib.sha1(repr(parts).encode()).hexdigest()[:8], 16)


# ---------------------------------------------------------------------------- checks
@dataclass
class Report:
    """What the harness measured (max over samples), for tightness reporting."""

    nodes: list[str] = field(default_factory=list)
    lipschitz_ratio: dict[str, float] = field(default_factory=dict)  # observed / claimed
    curvature_ratio: dict[str, float] = field(default_factory=dict)
    error_ratio: dict[str, float] = field(default_factory=dict)  # per format: observed / bound
    range_checked: int = 0
    error_skipped: dict[str, str] = field(default_factory=dict)
    bounds: dict[str, float] = field(default_factory=dict)  # certified max error per format
    lipschitz: dict[str, float] = field(default_factory=dict)  # claimed, "node:arg"
    curvature: dict[str, float] = field(default_factory=dict)  # claimed, per node


def _tiny(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float64 evaluation noise allowed when comparing values near a and b."""
    return 64 * EPS64 * (a.abs() + b.abs()) + 1e-300


# ---------------------------------------------------------------------------- batching
def _stack_tree(items: list[object]) -> object:
    leaves0, spec = torch.utils._pytree.tree_flatten(items[0])
    cols = [torch.utils._pytree.tree_flatten(it)[0] for it in items]
    stacked = [torch.stack([c[i] for c in cols]) if isinstance(leaves0[i], torch.Tensor) else leaves0[i] for i in range(len(leaves0))]
    return torch.utils._pytree.tree_unflatten(stacked, spec)


def _index_tree(tree: object, i: int) -> object:
    return torch.utils._pytree.tree_map(lambda t: t[i] if isinstance(t, torch.Tensor) else t, tree)


class Batcher:
    """Applies a function to a batch of points: ``torch.vmap`` when the op has batching
    rules, a loop otherwise (the same values either way, up to float64 rounding)."""

    def __init__(self) -> None:
        self.vmap_ok: dict[str, bool] = {}

    def __call__(self, tag: str, fn: Callable, *batched: object) -> object:
        if self.vmap_ok.get(tag, True):
            try:
                out = torch.vmap(fn)(*batched)
                self.vmap_ok[tag] = True
                return out
            except Exception:  # noqa: BLE001 - no batching rule (or vmap-incompatible op): loop
                if self.vmap_ok.get(tag):
                    raise
                self.vmap_ok[tag] = False
        n = torch.utils._pytree.tree_flatten(batched[0])[0][0].shape[0]
        return _stack_tree([fn(*[_index_tree(b, i) for b in batched]) for i in range(n)])


def _cat(points: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([p[k] for p in points]) for k in points[0]} if points else {}


def _check_range(case: NodeCase, outs: object, where: str) -> None:
    """Every output of every point in the batch lies in the node's intervals."""
    res = case.info.result
    assert res is not None
    ivs = res.out if isinstance(res.out, tuple) else (res.out,)
    vals = _flat(outs)
    for j, (iv, v) in enumerate(zip(ivs, vals)):
        if iv is None or v is None or not isinstance(iv, Interval):
            continue
        if iv.numel() == 0:
            continue
        assert tuple(v.shape[1:]) == tuple(iv.shape), f"{case.info.name} output {j}: shape {tuple(v.shape[1:])} vs interval {iv.shape}"
        x = as_markers(v.to(F64), iv.lo, iv.hi)
        assert not torch.isnan(x).any(), f"{case.info.name} output {j}: NaN at {where}"
        tol = 8 * EPS64 * x.abs()
        bad = (x < iv.lo - tol) | (x > iv.hi + tol)
        if bool(bad.any()):
            k, *idx = [int(t) for t in torch.nonzero(bad)[0]]
            i = tuple(idx)
            raise AssertionError(
                f"range: {case.info.name} ({case.op}) output {j} element {i} = {float(x[(k, *i)])!r} "
                f"outside [{float(iv.lo[i])!r}, {float(iv.hi[i])!r}] at {where} {k}"
            )


def _jacobians(case: NodeCase, bt: Batcher, X: dict[str, torch.Tensor], name: str) -> torch.Tensor | None:
    """Per point, the Jacobian (outputs x inputs, flattened) of the primary output w.r.t.
    ``name`` (reverse-mode autograd in float64); None where autograd does not apply."""
    if X[name][0].numel() == 0:
        return None

    def jac(vals):
        return torch.func.jacrev(lambda x: _primary(case.call({**vals, name: x})).reshape(-1))(vals[name])

    try:
        J = bt(f"jac:{name}", jac, X)
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return J.reshape(J.shape[0], J.shape[1], -1)


def _lip_pairs(case: NodeCase, smp: Sampler, X: dict[str, torch.Tensor], name: str, J: torch.Tensor | None) -> list[torch.Tensor]:
    """Second points (batched like ``X[name]``) for Lipschitz pairs that differ from X only
    in ``name``: uniform points, mirrored points, steps of 1e-2 and 1e-6 of the box width
    along the sign of the worst Jacobian row (random signs where it is 0 or unknown), and,
    with critical points, reflections through the nearest one (of all elements, and of the
    single element closest to it: pairs straddling a kink or a jump at a tiny distance)."""
    iv = case.args[name].iv
    lo, hi = iv.lo, iv.hi
    x = X[name]
    N = x.shape[0]
    w = hi - lo
    ys = [torch.stack([smp.point(iv, 5 + k, name) for k in range(N)]), lo + hi - x]
    d = torch.where(torch.rand(x.shape, generator=smp.gen) < 0.5, -1.0, 1.0).to(F64)
    if J is not None and J.numel():
        i = J.abs().sum(2).argmax(1)  # worst row per point
        s = torch.sign(J[torch.arange(N), i]).reshape(x.shape)
        d = torch.where(s == 0, d, s)
    for step in (1e-2, 1e-6):
        ys.append(torch.minimum(torch.maximum(x + d * (step * w), lo), hi))
    crit = list(smp.crit_for(name))
    if crit and x[0].numel():
        c = torch.tensor(crit, dtype=F64)
        flat = x.reshape(N, -1)
        near = c[(flat.unsqueeze(-1) - c).abs().argmin(-1)]
        refl = torch.minimum(torch.maximum(2 * near.reshape(x.shape) - x, lo), hi)
        ys.append(refl)
        j = (flat - near).abs().argmin(1)
        one = flat.clone()
        one[torch.arange(N), j] = refl.reshape(N, -1)[torch.arange(N), j]
        ys.append(one.reshape(x.shape))
    fixed = lo == hi
    return [torch.where(fixed, x, y) for y in ys]


def _check_lipschitz(case: NodeCase, smp: Sampler, bt: Batcher, X: dict[str, torch.Tensor], fx_all: object, rep: Report) -> None:
    res = case.info.result
    assert res is not None
    fx = _primary(fx_all).to(F64)
    N = fx.shape[0]
    for name in case.float_args:
        L = float(res.lipschitz.get(name, 0.0))
        if math.isinf(L):
            continue
        worst = 0.0
        J = _jacobians(case, bt, X, name)
        ys = _lip_pairs(case, smp, X, name, J)
        P = len(ys)
        Y = {k: v.repeat((P,) + (1,) * (v.dim() - 1)) for k, v in X.items()}
        Y[name] = torch.cat(ys)
        fy = _primary(bt("call", case.call, Y)).to(F64).reshape((P, N) + tuple(fx.shape[1:]))
        diff = (Y[name] - X[name].repeat((P,) + (1,) * (X[name].dim() - 1))).abs()
        diff = torch.where(torch.isnan(diff), torch.zeros_like(diff), diff)  # fixed infinite elements
        dx = diff.reshape(P, N, -1).amax(-1)
        df = (fy - fx.unsqueeze(0)).abs().reshape(P, N, -1)
        tiny = _tiny(fx.unsqueeze(0), fy).reshape(P, N, -1)
        allowed = L * dx.unsqueeze(-1) * (1 + REL_TOL) + tiny
        bad = (df > allowed) & (dx.unsqueeze(-1) > 0)
        if bool(bad.any()):
            p, k, i = [int(t) for t in torch.nonzero(bad)[0]]
            raise AssertionError(
                f"lipschitz: {case.info.name} ({case.op}) w.r.t. {name!r}: |f(x)-f(y)| = {float(df[p, k, i])!r} "
                f"> L*|x-y| = {L!r} * {float(dx[p, k])!r} (ratio {float(df[p, k, i] / dx[p, k])!r}; pair kind {p}, point {k})"
            )
        if df.numel():
            ratio = df.amax(-1) / dx.clamp(min=1e-300)
            worst = float(torch.where(dx > 0, ratio, torch.zeros_like(ratio)).max())
        if J is not None and J.numel():
            jm = J.abs().sum(2).amax(1)
            k = int(jm.argmax())
            m = float(jm[k])
            assert m <= L * (1 + REL_TOL) + 1e-300 + 64 * EPS64 * m, (
                f"lipschitz: {case.info.name} ({case.op}) w.r.t. {name!r}: ||J||_inf = {m!r} > L = {L!r} at point {k}"
            )
            worst = max(worst, m)
            _check_slope_floor(case, name, J)
        rep.lipschitz_ratio[f"{case.info.name}:{name}"] = worst / L if L > 0 else (0.0 if worst == 0 else math.inf)


def _check_slope_floor(case: NodeCase, name: str, J: torch.Tensor) -> None:
    """An elementwise rule's ``dinf`` (the least f' on its box, signed; the adjoint pass
    relies on it) is below f'(x) at every sampled point: the Jacobian's diagonal."""
    err = case.info.result.error
    model = getattr(err, "inner", err)
    dinf = getattr(model, "dinf", None)
    if dinf is None or J.shape[1] != J.shape[2]:
        return
    iv = case.args[name].iv
    floor = dinf(iv.lo, iv.hi).reshape(1, -1)
    d = J.diagonal(dim1=1, dim2=2)
    bad = d < floor - 64 * EPS64 * d.abs()
    if bool(bad.any()):
        k, i = [int(t) for t in torch.nonzero(bad)[0]]
        raise AssertionError(
            f"slope floor: {case.info.name} ({case.op}) f' = {float(d[k, i])!r} < dinf = {float(floor[0, i])!r} "
            f"on [{float(iv.lo.reshape(-1)[i])!r}, {float(iv.hi.reshape(-1)[i])!r}] at point {k}"
        )


def _d2_ff(case: NodeCase, vals: dict[str, torch.Tensor], h: dict[str, torch.Tensor]) -> torch.Tensor:
    """D^2 f(x)[h, h] of the primary output by forward-over-forward autograd (float64)."""
    names = list(h)

    def f(*xs):
        return _primary(case.call({**vals, **dict(zip(names, xs))}))

    def df(*xs):
        return torch.func.jvp(f, xs, tuple(h[n] for n in names))[1]

    return torch.func.jvp(df, tuple(vals[n] for n in names), tuple(h[n] for n in names))[1].reshape(-1)


def _d2_rr(case: NodeCase, vals: dict[str, torch.Tensor], h: dict[str, torch.Tensor]) -> torch.Tensor:
    """The second derivative of s -> f(x + s h) at 0, reverse over reverse (float64)."""

    def g(s):
        return _primary(case.call({**vals, **{n: vals[n] + s * h[n] for n in h}})).reshape(-1)

    return torch.func.jacrev(torch.func.jacrev(g))(torch.zeros((), dtype=F64))


def _check_curvature(case: NodeCase, smp: Sampler, bt: Batcher, X: dict[str, torch.Tensor], n_dirs: int, rep: Report) -> None:
    res = case.info.result
    assert res is not None
    kappa = float(res.curvature)
    names = case.float_args
    if math.isinf(kappa) or not names:
        return
    N = X[names[0]].shape[0]
    Hs = []
    for j in range(n_dirs):
        h = {}
        for n in names:
            shape = X[n].shape
            if j == 0:
                h[n] = torch.ones(shape, dtype=F64)
            elif j == 1:
                h[n] = (1 - 2 * (torch.arange(X[n][0].numel()) % 2)).to(F64).reshape(shape[1:]).expand(shape).clone()
            else:
                h[n] = torch.where(torch.rand(shape, generator=smp.gen) < 0.5, -1.0, 1.0).to(F64)
        Hs.append(h)
    for h in Hs:
        for n in names:
            iv = case.args[n].iv
            h[n] = torch.where(iv.lo == iv.hi, torch.zeros_like(h[n]), h[n])
    XX = {k: v.repeat((n_dirs,) + (1,) * (v.dim() - 1)) for k, v in X.items()}
    HH = {n: torch.cat([h[n] for h in Hs]) for n in names}
    sec = None
    for tag, m in (("d2ff", _d2_ff), ("d2rr", _d2_rr)):
        try:
            sec = bt(tag, lambda v, h, m=m: m(case, v, h), XX, HH)
            break
        except (RuntimeError, NotImplementedError, TypeError):
            continue
    assert sec is not None, f"curvature: autograd cannot differentiate {case.op} twice"
    sec = sec.to(F64).reshape(n_dirs * N, -1)
    if sec.shape[1] == 0:
        return
    assert not torch.isnan(sec).any(), f"curvature: NaN second derivative of {case.info.name}"
    half = 0.5 * sec.abs().amax(1)
    k = int(half.argmax())
    m = float(half[k])
    assert m <= kappa * (1 + REL_TOL) + 1e-12 * (1 + kappa), (
        f"curvature: {case.info.name} ({case.op}): 1/2 |D^2 f[h,h]| = {m!r} > kappa = {kappa!r} "
        f"at point {k % N}, direction {k // N}"
    )
    rep.curvature_ratio[case.info.name] = m / kappa if kappa > 0 else (0.0 if m == 0 else math.inf)


def _model_inputs(boxes: Sequence[Box], smp: Sampler, n: int) -> list[tuple[torch.Tensor, ...]]:
    """Samples of the model inputs: corners, critical points, uniform (float64 / ids)."""
    out = []
    for k in range(n):
        xs = []
        for i, b in enumerate(boxes):
            if b.per_element and b.is_float:
                iv = Interval(torch.zeros(b.shape, dtype=F64), torch.ones(b.shape, dtype=F64), b.dtype)
                crit = [((c - b.lo_t()) / (b.hi_t() - b.lo_t()).clamp(min=1e-300)) for c in smp.crit_for(f"input{i}")]
                t = smp.point(iv, k, f"input{i}")
                if crit and k % 3 == 0 and k > 4:
                    t = crit[k % len(crit)].clamp(0, 1)
                xs.append(t)
            else:
                iv = Interval(b.lo_t(), b.hi_t(), b.dtype)
                xs.append(smp.point(iv, k, f"input{i}"))
        out.append(tuple(xs))
    return out


def _check_errors(
    module: torch.nn.Module,
    ba: BoundsAnalysis,
    outs: Sequence[str | None],
    boxes: Sequence[Box],
    smp: Sampler,
    n: int,
    formats: Sequence[str],
    rep: Report,
) -> None:
    """(d): ``module`` run in each format vs float64; ``outs`` names the output node of each of
    its flattened outputs."""
    er = run_errors(ba, [{"*": f} for f in formats], keep_errs=True)
    ref = copy.deepcopy(module).to(F64).eval()
    lows = {f: copy.deepcopy(module).to(FORMAT_DTYPES[f]).eval() for f in formats}
    samples = _model_inputs(boxes, smp, n)
    finite_any = False
    for c, f in enumerate(formats):
        rep.bounds[f] = er.bound[c]
    for k, xs in enumerate(samples):
        with torch.no_grad():
            exact = _flat(ref(*xs))
        for c, f in enumerate(formats):
            dt = FORMAT_DTYPES[f]
            xl = tuple(x.to(dt) if x.dtype.is_floating_point else x for x in xs)
            try:
                with torch.no_grad():
                    low = _flat(lows[f](*xl))
            except (RuntimeError, NotImplementedError) as e:  # kernel missing in this dtype on CPU
                rep.error_skipped[f] = f"{type(e).__name__}: {str(e)[:80]}"
                continue
            for j, (name, ex, lv) in enumerate(zip(outs, exact, low)):
                if name is None or ex is None or lv is None:
                    continue
                if not ex.dtype.is_floating_point:
                    # Integer and boolean outputs (indices, flags) are checked too: an index
                    # the analysis calls exact must be the exact one in every format.
                    ex, lv = ex.to(F64), lv.to(F64)
                bound = er.output_err.get(name)
                if bound is None and not ba.nodes[name].primary.is_float:
                    # (the model's bound covers float outputs; an integer output's own
                    # error bound is the node's)
                    bound = er.node_err.get(name)
                    bound = bound[0] if isinstance(bound, tuple) else bound
                if bound is None:
                    # No error tensor: the analysis claims the output is exact.
                    bound_c = torch.zeros(tuple(ex.shape), dtype=F64)
                else:
                    bound_c = bound[c] if bound.shape[0] > 1 else bound[0]
                    bound_c = bound_c.expand(tuple(ex.shape))
                if not bool(torch.isfinite(bound_c).all()):
                    continue
                finite_any = True
                d = abs_error(lv, ex)
                # (a non-finite reference value is never "close": it needs an infinite bound)
                allowed = bound_c * (1 + REL_TOL) + torch.where(torch.isfinite(ex), 4 * EPS64 * ex.abs(), 0.0) + 1e-300
                if bool((d > allowed).any()):
                    i = int(torch.argmax(d - allowed))
                    raise AssertionError(
                        f"rounding error ({f}): output {j} ({name}) element {i}: |computed - exact| = {float(d.reshape(-1)[i])!r} "
                        f"> bound {float(bound_c.reshape(-1)[i])!r} (exact {float(ex.reshape(-1)[i])!r}, "
                        f"computed {float(lv.reshape(-1)[i])!r}) at sample {k}"
                    )
                r = float((d / bound_c.clamp(min=1e-300)).max()) if d.numel() else 0.0
                rep.error_ratio[f] = max(rep.error_ratio.get(f, 0.0), r)
    rep.error_skipped.setdefault("_finite", "yes" if finite_any else "no finite bound")


_DEFAULTS = dict(
    n=24, n_dirs=4, n_round=12, critical=(), smooth=True, formats=("fp16", "bf16", "fp32"),
    allow_unsupported=False, require_finite=True, seed=0, reference=None,
)


def check_rule(
    op: Callable | torch.nn.Module,
    boxes: Sequence[Box],
    target: torch._ops.OpOverload | Sequence[torch._ops.OpOverload],
    *,
    consts: Mapping[str, torch.Tensor] | None = None,
    decompose: bool = True,
    **kw: object,
) -> Report:
    """Run checks (a)-(d) (see the module docstring) for every node of ``target`` in the
    exported one-op model. Raises AssertionError on the first violation.

    Options (``kw``): ``n`` points per box; ``n_dirs`` directions h per point; ``n_round``
    model inputs for the rounding check; ``critical``: points to sample near (a list, or per
    argument name); ``smooth``: check the curvature claim (C^2 ops; piecewise-linear ops
    pass it trivially, autograd's D^2 being 0 between kinks); ``formats`` (None skips the
    rounding check); ``allow_unsupported``; ``require_finite``: the target's range and
    Lipschitz bounds must be finite (so that the test can fail); ``seed``; ``reference``:
    {op: function} evaluating an op more accurately than its float64 kernel (the same
    mathematical function; e.g. a two-pass LayerNorm whose centring is exact).
    """
    module, cap, loaded = build(op, boxes, consts, decompose)
    outs = [o.name if o is not None else None for o in cap.outputs]
    with _one_thread():
        ba = analyze_bounds(loaded, cap)
        return _run_checks(ba, None, module, outs, boxes, target, **{**_DEFAULTS, **kw})


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # NB: tiny float64 kernels on a 2-core machine are 1000x slower with a thread pool that
    # spins; the checks are sequential anyway. (Results do not depend on it: every bound
    # checked holds for any summation order.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run_checks(ba, layer, module, outs, boxes, target, *, n, n_dirs, n_round, critical, smooth, formats, allow_unsupported, require_finite, seed, reference) -> Report:
    """Checks (a)-(c) on the target nodes (of ``layer`` if given), (d) on ``module``."""
    targets = [target] if isinstance(target, torch._ops.OpOverload) else list(target)
    mine = (lambda i: True) if layer is None else (lambda i: i.layer == layer or i.layer.startswith(layer + "."))
    if not allow_unsupported:
        bad = [u for u in ba.unsupported if layer is None or u["module"] == layer or u["module"].startswith(layer + ".")]
        assert not bad, f"unsupported nodes: {bad}"
    nodes = [i for i in ba.nodes.values() if i.kind == "call" and i.node.target in targets and mine(i)]
    assert nodes, f"no node of {targets} in the graph: {[str(i.node.target) for i in ba.nodes.values() if i.kind == 'call' and mine(i)]}"
    rep = Report(nodes=[i.name for i in nodes])
    smp = Sampler(torch.Generator().manual_seed(_seed(seed, [b.key() for b in boxes], [str(t) for t in targets])), critical)
    for info in nodes:
        assert info.unsupported is None, f"{info.name}: {info.unsupported}"
        res = info.result
        if res is None:  # folded by the walker (integer/boolean result of known inputs)
            assert info.out is not None, f"{info.name}: no result"
            info = dataclasses.replace(info, result=RuleResult(out=info.out))
            res = info.result
        case = _node_case(ba, info, reference)
        prim = res.primary
        rep.curvature[info.name] = float(res.curvature)
        for a in case.float_args:
            rep.lipschitz[f"{info.name}:{a}"] = float(res.lipschitz.get(a, 0.0))
        if require_finite:
            assert prim is None or prim.is_point or prim.is_bounded(), f"{info.name}: unbounded range {prim}"
            for a in case.float_args if prim is not None and prim.is_float else ():
                assert math.isfinite(res.lipschitz.get(a, 0.0)), f"{info.name}: infinite L for {a}"
        bt = Batcher()
        points = [{name: smp.point(a.iv, k, name) for name, a in case.args.items() if a.sampled} for k in range(n)]
        X = _cat(points)
        if not X:  # nothing varies: one evaluation
            outs_v = _stack_tree([case.call({})])
        else:
            outs_v = bt("call", case.call, X)
        _check_range(case, bt("call", case.call, case.tie(X)) if (case.aliases or case.derived) else outs_v, "point")
        rep.range_checked += n if X else 1
        if X and prim is not None and prim.is_float:  # (booleans and ids have no L or kappa)
            _check_lipschitz(case, smp, bt, X, outs_v, rep)
            if smooth:
                _check_curvature(case, smp, bt, X, n_dirs, rep)
    if formats:
        _check_errors(module, ba, outs, boxes, smp, n_round, list(formats), rep)
    return rep


# ---------------------------------------------------------------------------- suites
class _Combined(torch.nn.Module):
    def __init__(self, cases: Sequence[torch.nn.Module], n_inputs: Sequence[int]) -> None:
        super().__init__()
        self.n_inputs = list(n_inputs)
        for i, m in enumerate(cases):
            self.add_module(f"case{i}", m)

    def forward(self, *xs):
        outs: list[object] = []
        k = 0
        for i, n in enumerate(self.n_inputs):
            r = getattr(self, f"case{i}")(*xs[k : k + n])
            k += n
            outs.extend(r if isinstance(r, (tuple, list)) else [r])
        return tuple(outs)


class Suite:
    """Many one-op cases exported as *one* model (one submodule per case, fed by its own
    inputs), so that torch.export + run_decompositions (~0.5 s of fixed cost each) runs once
    per test file instead of once per op. Each case is then analysed and checked on its
    own: on the subgraph of its outputs and their ancestors (:meth:`case_capture`), with
    the boxes of the check.

    Register every case at import time (``suite.case(...)``), check in tests (``.check``).
    """

    def __init__(self, decompose: bool = True) -> None:
        self.decompose = decompose
        self.modules: list[torch.nn.Module] = []
        self.templates: list[list[Box]] = []
        self._built: tuple[Captured, list[list[str | None]]] | None = None

    def case(self, op: Callable | torch.nn.Module, template: Sequence[Box], consts: Mapping[str, torch.Tensor] | None = None) -> "SuiteCase":
        """Register ``op`` on inputs shaped like ``template`` (whose boxes are also the
        defaults seen while another case is checked)."""
        assert self._built is None, "register every case before the first check"
        if isinstance(op, torch.nn.Module):
            assert not consts, "pass constants as the module's own parameters or buffers"
            m = op
        else:
            m = OpModule(op, consts)
        assert not any(b.per_element for b in template), "per-element boxes: use check_rule"
        self.modules.append(m.eval())
        self.templates.append(list(template))
        return SuiteCase(self, len(self.modules) - 1)

    def _build(self) -> tuple[Captured, list[list[str | None]]]:
        if self._built is None:
            model = _Combined(self.modules, [len(t) for t in self.templates]).eval()
            boxes = [b for t in self.templates for b in t]
            specs = [InputSpec(b.shape, b.dtype, float(b.lo), float(b.hi)) for b in boxes]
            ex = tuple(torch.full(b.shape, float(b.lo), dtype=F64).to(b.dtype) for b in boxes)
            loaded = LoadedModel(path=Path("rule_suite.py"), name="rule_suite", module=model, example_inputs=ex, inputs=specs, source_sha256="")
            cap = _capture(loaded, self.decompose)
            # Output nodes per case (the combined model returns the cases' outputs in order).
            with torch.no_grad():
                counts = [len(_flat(m(*ex_i))) for m, ex_i in zip(self.modules, self._split(ex))]
            names = [o.name if o is not None else None for o in cap.outputs]
            per, k = [], 0
            for c in counts:
                per.append(names[k : k + c])
                k += c
            assert k == len(names), "output count mismatch"
            self._built = (cap, per)
            self._model, self._boxes = model, boxes
            self._case_caps: dict[int, Captured] = {}
        return self._built

    def case_capture(self, i: int) -> Captured:
        """The exported graph restricted to case ``i`` (its outputs and all their ancestors),
        with its own inputs numbered from 0: each check analyses only its own nodes."""
        cap, per = self._build()
        if i in self._case_caps:
            return self._case_caps[i]
        by_name = {n.name: n for n in cap.graph.nodes}
        outs = [by_name[o] for o in per[i] if o is not None]
        keep: set[torch.fx.Node] = set()
        stack = list(outs)
        while stack:
            n = stack.pop()
            if n in keep:
                continue
            keep.add(n)
            stack.extend(n.all_input_nodes)
        g = torch.fx.Graph()
        env: dict[torch.fx.Node, torch.fx.Node] = {}
        for n in cap.graph.nodes:
            if n in keep:
                env[n] = g.node_copy(n, lambda a: env[a])
                assert env[n].name == n.name
        g.output(tuple(env[o] for o in outs))
        offset = sum(len(t) for t in self.templates[:i])
        ph = {}
        for n in g.nodes:
            if n.op == "placeholder":
                kind, payload = cap.placeholders[n.name]
                ph[n.name] = (kind, int(payload) - offset) if kind == "input" else (kind, payload)  # type: ignore[arg-type]
        outputs = [env[by_name[o]] if o is not None else None for o in per[i]]
        sub = Captured(cap.program, g, ph, outputs, cap.module_of, cap.module_type, cap.times)
        self._case_caps[i] = sub
        return sub

    def _split(self, xs: Sequence) -> list[list]:
        out, k = [], 0
        for t in self.templates:
            out.append(list(xs[k : k + len(t)]))
            k += len(t)
        return out


@dataclass(frozen=True)
class SuiteCase:
    suite: Suite
    index: int

    def check(self, boxes: Sequence[Box] | None, target: torch._ops.OpOverload | Sequence[torch._ops.OpOverload], **kw: object) -> Report:
        """:func:`check_rule` for this case (``boxes`` None: its template boxes)."""
        su = self.suite
        cap, per = su._build()
        tmpl = su.templates[self.index]
        boxes = list(tmpl if boxes is None else boxes)
        assert [(b.shape, b.dtype) for b in boxes] == [(b.shape, b.dtype) for b in tmpl], "boxes must match the case's shapes"
        assert not any(b.per_element for b in boxes), "per-element boxes: use check_rule"
        specs = [InputSpec(b.shape, b.dtype, float(b.lo), float(b.hi)) for b in boxes]
        sub = su.case_capture(self.index)
        loaded = LoadedModel(path=Path("rule_suite.py"), name="rule_suite", module=su.modules[self.index], example_inputs=(), inputs=specs, source_sha256="")
        with _one_thread():
            ba = analyze_bounds(loaded, sub)
            layer = f"case{self.index}"
            return _run_checks(ba, layer, su.modules[self.index], per[self.index], boxes, target, **{**_DEFAULTS, **kw})


__all__ = [
    "Box",
    "OpModule",
    "Report",
    "Suite",
    "box",
    "build",
    "check_rule",
    "halve_curvature",
    "halve_lipschitz",
    "ids",
    "scale_error",
    "shrink_range",
    "wrong_rule",
]
