"""The graph walker: sound bounds for every node of a captured model.

Nodes are visited in topological order (fx order). Each call node's arguments are bound to
their ATen schema names once, here, with every tensor replaced by its interval; the rule for
the op is looked up in the registry and its :class:`~curvature_rules.RuleResult` stored in
one result table. An op without a rule, or a rule that declines the node, is recorded in
``unsupported`` and gets the unknown interval ``[-inf, inf]`` with infinite Lipschitz and
curvature bounds: everything downstream is unbounded (fail closed), nothing crashes.

Also here: per-layer summaries (composition of Lipschitz and curvature bounds inside each
layer, DESIGN 4.1: ``kappa(g o f) <= kappa_g L_f^2 + L_g kappa_f``) and the scalar gains
``G_i`` from each node to the model output (one backward pass: the sum over paths of
products of per-edge Lipschitz bounds, infinity norms).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from dataclasses import dataclass, field

import torch

from certifier import failclosed
from certifier.ball import Ball, BallPass
from certifier.capture import Captured
from certifier.interval import INF, Interval, down, up
from certifier.loader import LoadedModel
from curvature_rules import RuleInput, RuleResult, lookup
from curvature_rules.creation import ConstantError
from curvature_rules.masks import MASK_MIN, mask_safe

F64 = torch.float64

#: Ops that carry no numerical content; they are left out of per-layer op lists.
QUIET_OPS = {
    "view", "_unsafe_view", "reshape", "permute", "expand", "clone", "alias", "detach", "unsqueeze",
    "squeeze", "t", "transpose", "contiguous", "getitem", "_assert_tensor_metadata", "lift_fresh_copy",
}


@dataclass
class NodeInfo:
    name: str
    node: torch.fx.Node
    op: str
    layer: str
    out: Interval | tuple | None
    result: RuleResult | None
    producers: dict[str, str]  # argument name -> producing node name (tensor arguments)
    unsupported: str | None = None
    kind: str = "call"  # call | param | buffer | constant | input | getitem
    #: l2 ball around a center holding every exact value over the domain (certifier.ball)
    ball: Ball | None = None

    @property
    def primary(self) -> Interval | None:
        o = self.out
        if isinstance(o, tuple):
            return o[0] if o and isinstance(o[0], Interval) else None
        return o if isinstance(o, Interval) else None

    @property
    def is_float(self) -> bool:
        p = self.primary
        return p is not None and p.is_float

    @property
    def is_point(self) -> bool:
        p = self.primary
        return p is not None and p.is_point

    def lipschitz(self) -> dict[str, float]:
        if self.kind == "getitem":
            return {"self": 1.0}
        if self.result is None:
            return {}
        return dict(self.result.lipschitz)

    def curvature(self) -> float:
        if self.kind == "getitem" or self.result is None:
            return 0.0
        return float(self.result.curvature)


@dataclass
class LayerSummary:
    name: str
    module_type: str
    nodes: list[str]
    ops: list[str]
    inputs: list[str]  # external float tensor producers
    outputs: list[str]  # nodes whose value leaves the layer (or is a model output)
    range: tuple[float, float]
    lipschitz: float
    curvature: float
    diameter: float  # infinity-norm diameter of the layer's input box
    gain: float  # scalar gain from the layer's outputs to the model output
    flops: float
    elements: int  # elements read and written (for the cost model)
    has_matmul: bool


@dataclass
class BoundsAnalysis:
    loaded: LoadedModel
    captured: Captured
    nodes: dict[str, NodeInfo]
    outputs: list[str]
    unsupported: list[dict]
    seconds: float
    gains: dict[str, float] = field(default_factory=dict)
    layers: dict[str, LayerSummary] = field(default_factory=dict)
    #: node -> rigorous l2 norm bound of its linear map in the activation (certifier.ball)
    op_norms: dict[str, float] = field(default_factory=dict)

    def output_range(self) -> tuple[float, float]:
        los, his = [], []
        for o in self.outputs:
            iv = self.nodes[o].primary
            if iv is not None and iv.is_float:
                lo, hi = iv.bounds()
                los.append(lo)
                his.append(hi)
        return (min(los), max(his)) if los else (0.0, 0.0)

    def consumers(self) -> dict[str, list[tuple[str, str]]]:
        cons: dict[str, list[tuple[str, str]]] = {n: [] for n in self.nodes}
        for name, info in self.nodes.items():
            for arg, prod in info.producers.items():
                cons[prod].append((name, arg))
        return cons


def _short(target: object) -> str:
    if target is operator.getitem:
        return "getitem"
    s = getattr(target, "__name__", None) or str(target)
    name = getattr(target, "_opname", None) or s.split(".")[0]
    return name


def _meta_outputs(node: torch.fx.Node) -> tuple[tuple[tuple[int, ...], ...], tuple[torch.dtype, ...]]:
    val = node.meta.get("val")
    vals = val if isinstance(val, (tuple, list)) else (val,)
    shapes, dtypes = [], []
    for v in vals:
        if isinstance(v, torch.Tensor):
            shapes.append(tuple(int(s) for s in v.shape))
            dtypes.append(v.dtype)
        else:
            shapes.append(())
            dtypes.append(torch.float32)
    return tuple(shapes), tuple(dtypes)


def _unknown_like(node: torch.fx.Node) -> Interval | tuple:
    shapes, dtypes = _meta_outputs(node)
    val = node.meta.get("val")
    ivs = tuple(Interval.unknown(s, d) for s, d in zip(shapes, dtypes))
    return ivs if isinstance(val, (tuple, list)) else ivs[0]


def _bind(node: torch.fx.Node, env: dict[str, object]):
    """Bind a call node's arguments to its schema names (tensors -> intervals)."""
    schema = node.target._schema  # type: ignore[union-attr]
    args: dict[str, object] = {}
    producers: dict[str, str] = {}
    kwonly: set[str] = set()

    def resolve(v, name):
        if isinstance(v, torch.fx.Node):
            producers[name] = v.name
            return env[v.name]
        if isinstance(v, (list, tuple)) and any(isinstance(x, torch.fx.Node) for x in v):
            out = []
            for i, x in enumerate(v):
                out.append(resolve(x, f"{name}.{i}"))
            return out
        return v

    pos = list(node.args)
    for i, a in enumerate(schema.arguments):
        if a.kwarg_only:
            kwonly.add(a.name)
        if not a.kwarg_only and i < len(pos):
            v = pos[i]
        elif a.name in node.kwargs:
            v = node.kwargs[a.name]
        elif a.has_default_value():
            v = a.default_value
        else:
            v = None
        args[a.name] = resolve(v, a.name)
    return args, producers, frozenset(kwonly)


def _foldable(target: object) -> bool:
    """Folding runs an op once on the known inputs: not for random ops (a draw is not the
    op's value) nor for uninitialised memory; and only for ops that have a rule, so an op
    without one is still reported."""
    tags = getattr(target, "tags", ())
    if torch.Tag.nondeterministic_seeded in tags:
        return False
    name = str(target)
    return "empty" not in name and "rand" not in name


def _fold_exact(node: torch.fx.Node, args: dict[str, object], kwonly: frozenset[str]) -> Interval | tuple | None:
    """Evaluate a node whose tensor inputs are all known and whose outputs are all integer or
    boolean: integer arithmetic is exact, so the result is a point."""
    _, dtypes = _meta_outputs(node)
    if any(d.is_floating_point for d in dtypes):
        return None
    vals: list[object] = []
    kw: dict[str, object] = {}
    for name, v in args.items():
        if isinstance(v, Interval):
            if not v.is_point:
                return None
            v = v.value
        elif isinstance(v, list):
            if any(isinstance(x, Interval) and not x.is_point for x in v):
                return None
            v = [x.value if isinstance(x, Interval) else x for x in v]
        (kw.__setitem__(name, v) if name in kwonly else vals.append(v))
    out = node.target(*vals, **kw)  # type: ignore[operator]
    if isinstance(out, (tuple, list)):
        return tuple(Interval.point(t) if isinstance(t, torch.Tensor) else None for t in out)
    return Interval.point(out) if isinstance(out, torch.Tensor) else None


def _mask_markers(node: torch.fx.Node, out: object, memo: dict[str, bool]) -> Interval | None:
    """A known float tensor holding values of magnitude >= 2^100 (an attention mask's
    ``finfo.min``) whose every use leads only into a softmax (``mask_safe``): those
    entries become exact -inf / +inf markers, read as "at most -2^64 (at least 2^64), exact
    and computed". Along the allowed path that holds: adding a value within +-2^40 (the add
    rule's condition) moves it by at most 2^40 per op, a cast keeps it or overflows to an
    infinity of its sign (fp8_e4m3, which has none, is refused by the overflow check), and
    where / views only move it. The softmax then gives 0 where the rest of the row stays
    within 2^40 of 0 (curvature_rules.softmax), computed exactly (exp underflows in every
    format) and within ``exp(-2^63)`` (< 2^-1074, charged there) of the exact value. Returns
    the substituted interval, or None."""
    if not (isinstance(out, Interval) and out.is_point and out.is_float and out.value is not None):
        return None
    v = out.value
    if v.numel() == 0 or not v.is_floating_point():
        return None
    try:  # one pass over every weight; the rest only for masks
        vlo, vhi = torch.aminmax(v)
    except (RuntimeError, NotImplementedError):  # dtypes without aminmax (fp8)
        v = v.to(F64)
        vlo, vhi = torch.aminmax(v)
    if float(vlo) > -MASK_MIN and float(vhi) < MASK_MIN:
        return None
    big = torch.isfinite(v) & (v.abs() >= MASK_MIN)
    if not bool(big.any()) or not mask_safe(node, memo):
        return None
    inf = torch.full_like(v, INF)
    return Interval.point(torch.where(big, torch.where(v < 0, -inf, inf), v))


def analyze_bounds(
    loaded: LoadedModel,
    captured: Captured,
    progress=None,
    boxes: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    relational: bool = True,
) -> BoundsAnalysis:
    """Propagate sound intervals from the input domain through every node.

    ``boxes`` (one ``(lo, hi)`` pair of tensors of the input's shape per input) replaces the
    declared domain with an elementwise box; a point box ``lo == hi`` gives a sound enclosure
    of the exact value of every node at that input (used to check witnesses, smt.witness).

    ``relational``: also propagate an l2 ball per node (:mod:`certifier.ball`) and intersect
    each linear node's box with it; off, boxes alone (for comparisons).
    """
    t0 = time.perf_counter()
    env: dict[str, object] = {}
    nodes: dict[str, NodeInfo] = {}
    unsupported: list[dict] = []
    graph_nodes = list(captured.graph.nodes)
    total = len(graph_nodes)
    balls = BallPass() if relational else None
    mask_memo: dict[str, bool] = {}
    for k, node in enumerate(graph_nodes):
        if progress is not None and k % 50 == 0:
            progress(k, total)
        if node.op == "placeholder":
            kind, payload = captured.placeholders.get(node.name, ("other", None))
            if kind in ("param", "buffer", "constant") and isinstance(payload, torch.Tensor):
                iv: Interval | tuple | None = Interval.point(payload.detach())
                iv = _mask_markers(node, iv, mask_memo) or iv
            elif kind == "input":
                spec = loaded.inputs[int(payload)]  # type: ignore[arg-type]
                if boxes is not None:
                    lo = boxes[int(payload)][0].to(F64).reshape(spec.shape)  # type: ignore[arg-type]
                    hi = boxes[int(payload)][1].to(F64).reshape(spec.shape)  # type: ignore[arg-type]
                else:
                    lo = torch.full(spec.shape, spec.lo, dtype=F64)
                    hi = torch.full(spec.shape, spec.hi, dtype=F64)
                if boxes is not None and not spec.dtype.is_floating_point and bool((lo == hi).all()):
                    iv = Interval.point(lo.to(spec.dtype))  # integer ids at a point: exact
                else:
                    iv = Interval(lo, hi, spec.dtype)
            else:
                iv = _unknown_like(node)
                unsupported.append({"node": node.name, "op": "placeholder", "module": "", "reason": "unsupported input kind"})
            env[node.name] = iv
            nodes[node.name] = NodeInfo(node.name, node, "input" if kind == "input" else kind, captured.layer_of(node.name), iv, None, {}, kind=kind)
            if balls is not None and kind == "input":
                nodes[node.name].ball = balls.step(nodes[node.name], nodes)[0]
            continue
        if node.op == "output":
            continue
        if node.op != "call_function":
            env[node.name] = _unknown_like(node)
            unsupported.append({"node": node.name, "op": node.op, "module": captured.module_of.get(node.name, ""), "reason": "not a call_function node"})
            nodes[node.name] = NodeInfo(node.name, node, node.op, captured.layer_of(node.name), env[node.name], None, {}, unsupported="node kind")
            continue
        layer = captured.layer_of(node.name)
        if node.target is operator.getitem:
            src, idx = node.args
            v = env[src.name]  # type: ignore[union-attr]
            out = v[idx] if isinstance(v, (tuple, list)) else v  # type: ignore[index]
            env[node.name] = out
            nodes[node.name] = NodeInfo(node.name, node, "getitem", layer, out, None, {"self": src.name}, kind="getitem")  # type: ignore[union-attr]
            if balls is not None:
                nodes[node.name].ball = balls.step(nodes[node.name], nodes)[0]
            continue
        opname = _short(node.target)
        info_unsup = None
        result: RuleResult | None = None
        try:
            args, producers, kwonly = _bind(node, env)
        except Exception as e:  # noqa: BLE001
            args, producers, kwonly = {}, {}, frozenset()
            info_unsup = f"cannot bind arguments: {e}"
        out = None
        if info_unsup is None:
            rule = lookup(node.target)
            out = None
            if rule is not None and _foldable(node.target):
                try:
                    out = _fold_exact(node, args, kwonly)
                except Exception:  # noqa: BLE001 - folding is an optimisation only
                    out = None
            if out is None:
                if rule is None:
                    info_unsup = "no rule for this op"
                else:
                    shapes, dtypes = _meta_outputs(node)
                    inp = RuleInput(node, node.target, args, shapes, dtypes, kwonly)  # type: ignore[arg-type]
                    try:
                        result = rule(inp)
                        out = result.out
                        _check_shapes(node, out)
                    except NotImplementedError as e:
                        info_unsup = f"rule declines: {e}"
                        result = None
                    except Exception as e:  # noqa: BLE001 - fail closed, never crash
                        if failclosed.reraise():
                            raise
                        info_unsup = f"rule failed: {failclosed.describe(e)}"
                        result = None
        if info_unsup is not None:
            out = _unknown_like(node)
            unsupported.append({"node": node.name, "op": str(node.target), "module": captured.module_of.get(node.name, ""), "reason": info_unsup})
            result = RuleResult(out=out, lipschitz={a: INF for a in producers}, curvature=INF, error=None)
        marked = _mask_markers(node, out, mask_memo) if info_unsup is None else None
        if marked is not None:
            out = marked
            if result is not None:
                err = result.error
                if isinstance(err, ConstantError):  # the constant's own storage rounding
                    err = ConstantError(marked)
                result = dataclasses.replace(result, out=marked, error=err)
        info = NodeInfo(node.name, node, opname, layer, out, result, producers, unsupported=info_unsup)
        if balls is not None and info_unsup is None:
            info.ball, rad = balls.step(info, nodes)
            if rad is not None:
                _tighten(info, rad)
        env[node.name] = info.out
        nodes[node.name] = info
    outputs = [o.name for o in captured.outputs if o is not None]
    ba = BoundsAnalysis(loaded, captured, nodes, outputs, unsupported, time.perf_counter() - t0)
    if balls is not None:
        ba.op_norms = dict(balls.op_norm)
    ba.gains = compute_gains(ba)
    ba.layers = summarize_layers(ba)
    return ba


def _tighten(info: NodeInfo, rad: torch.Tensor) -> None:
    """Intersect a linear node's box with ``c_i +- r_i`` from its ball (certifier.ball); the
    rule's error model then sees the tighter output magnitudes."""
    iv, res = info.out, info.result
    if not isinstance(iv, Interval) or iv.is_point or res is None or info.ball is None:
        return
    c = info.ball.center
    if c.shape != iv.lo.shape or rad.shape != c.shape:
        return
    lo = torch.maximum(iv.lo, down(c - rad))
    hi = torch.minimum(iv.hi, up(c + rad))
    if bool((lo > hi).any()):  # cannot happen for sound enclosures; keep the box
        return
    new = Interval(lo, hi, iv.dtype)
    err = res.error
    if err is not None and dataclasses.is_dataclass(err) and isinstance(getattr(err, "out", None), Interval):
        err = dataclasses.replace(err, out=new)
    info.out = new
    info.result = dataclasses.replace(res, out=new, error=err)


def _check_shapes(node: torch.fx.Node, out: object) -> None:
    shapes, _ = _meta_outputs(node)
    outs = out if isinstance(out, tuple) else (out,)
    for o, s in zip(outs, shapes):
        if isinstance(o, Interval) and o.shape != s and s != ():
            raise RuntimeError(f"rule produced shape {o.shape}, expected {s}")


def float_producers(ba: BoundsAnalysis, info: NodeInfo) -> dict[str, str]:
    """Arguments of ``info`` fed by float, non-constant nodes (the ones errors flow along)."""
    out = {}
    for arg, prod in info.producers.items():
        p = ba.nodes[prod]
        if p.is_float and not p.is_point:
            out[arg] = prod
    return out


def compute_gains(ba: BoundsAnalysis) -> dict[str, float]:
    """G_i = sum over paths from node i to an output of the product of edge Lipschitz bounds."""
    G: dict[str, float] = {n: 0.0 for n in ba.nodes}
    for o in ba.outputs:
        if ba.nodes[o].is_float:
            G[o] = 1.0
    jumps = discontinuous(ba)
    for name in reversed(list(ba.nodes)):
        info = ba.nodes[name]
        g = G[name]
        if g == 0.0:
            continue
        for _arg, prod, l in gain_edges(ba, info, jumps):
            if l == 0.0:
                continue
            G[prod] = G[prod] + _mul(g, l)
    return G


def summarize_layers(ba: BoundsAnalysis) -> dict[str, LayerSummary]:
    """Group nodes by module path and compose Lipschitz/curvature bounds inside each layer."""
    groups: dict[str, list[str]] = {}
    for name, info in ba.nodes.items():
        if info.kind != "call" and info.kind != "getitem":
            continue
        groups.setdefault(info.layer, []).append(name)
    cons = ba.consumers()
    out_set = set(ba.outputs)
    jumps = discontinuous(ba)
    layers: dict[str, LayerSummary] = {}
    for layer, names in groups.items():
        members = set(names)
        Lc: dict[str, float] = {}
        Kc: dict[str, float] = {}
        ext_inputs: list[str] = []
        flops = 0.0
        has_mm = False
        ops: list[str] = []
        for n in names:
            info = ba.nodes[n]
            if info.op not in QUIET_OPS and info.op not in ops:
                ops.append(info.op)
            if info.result is not None:
                flops += info.result.flops
                has_mm = has_mm or info.result.accum_length > 0 and info.op in ("mm", "addmm", "bmm", "convolution", "baddbmm", "matmul")
            Ls, Ks = [], []
            Lsum = 0.0
            for _arg, prod, l in gain_edges(ba, info, jumps):
                if prod in members:
                    lp, kp = Lc.get(prod, 0.0), Kc.get(prod, 0.0)
                else:
                    lp, kp = 1.0, 0.0
                    if prod not in ext_inputs:
                        ext_inputs.append(prod)
                Ls.append(lp)
                Lsum += _mul(l, lp)
                Ks.append(_mul(l, kp))
            kappa_n = info.curvature()
            lmax = max(Ls) if Ls else 0.0
            Lc[n] = Lsum
            Kc[n] = _mul(kappa_n, lmax * lmax) + sum(Ks)
        outs = [n for n in names if n in out_set or any(c not in members for c, _ in cons[n])]
        outs = [n for n in outs if ba.nodes[n].is_float] or [names[-1]]
        los, his = [], []
        for n in outs:
            iv = ba.nodes[n].primary
            if iv is not None and iv.numel():
                lo, hi = iv.bounds()
                los.append(lo)
                his.append(hi)
        diam = 0.0
        elements = 0
        for p in ext_inputs:
            iv = ba.nodes[p].primary
            if iv is not None and iv.numel():
                d = float((iv.hi - iv.lo).max())
                diam = max(diam, d if d == d else INF)
                elements += iv.numel()
        for n in outs:
            iv = ba.nodes[n].primary
            if iv is not None:
                elements += iv.numel()
        for n in names:
            info = ba.nodes[n]
            for arg, prod in info.producers.items():
                p = ba.nodes[prod]
                if p.kind == "param" and p.primary is not None:
                    elements += p.primary.numel()
        layers[layer] = LayerSummary(
            name=layer,
            module_type=ba.captured.module_type.get(layer, "") if layer != "(model)" else type(ba.loaded.module).__name__,
            nodes=names,
            ops=ops,
            inputs=ext_inputs,
            outputs=outs,
            range=(min(los), max(his)) if los else (0.0, 0.0),
            lipschitz=max((Lc.get(n, 0.0) for n in outs), default=0.0),
            curvature=max((Kc.get(n, 0.0) for n in outs), default=0.0),
            diameter=diam,
            gain=max((ba.gains.get(n, 0.0) for n in outs), default=0.0),
            flops=flops,
            elements=elements,
            has_matmul=has_mm,
        )
    return layers


#: Products of nonzero bounds are kept at or above this: an upper bound may be raised, and a
#: chain of tiny and huge constants must not underflow to 0 on the way (a claim of 0).
TINY = 2.0**-1000


def _mul(a: float, b: float) -> float:
    if a == 0.0 or b == 0.0:
        return 0.0
    r = a * b
    return max(r, TINY) if r == r else INF


def discontinuous(ba: BoundsAnalysis) -> set[str]:
    """Non-float nodes (booleans, integers) that are not constant over the domain and depend
    on float data: comparisons, casts to integers, argmax indices and what is computed from
    them. A float value read through one of them can jump, so every edge into or out of one
    has an infinite Lipschitz constant in the gains and the layer summaries."""
    out: set[str] = set()
    for name, info in ba.nodes.items():
        if info.is_float or info.is_point:
            continue
        for prod in info.producers.values():
            p = ba.nodes[prod]
            if (p.is_float and not p.is_point) or prod in out:
                out.add(name)
                break
    return out


def gain_edges(ba: BoundsAnalysis, info: NodeInfo, jumps: set[str]) -> list[tuple[str, str, float]]:
    """(argument, producer, Lipschitz bound) of the edges that gains and layer summaries
    compose: float non-constant producers (the rule's constant; a missing one is 0, or
    infinite for an unsupported node), and the edges of :func:`discontinuous` nodes (infinite)."""
    L = info.lipschitz()
    edges = []
    fp = float_producers(ba, info)
    for arg, prod in info.producers.items():
        if prod in jumps or (arg in fp and info.name in jumps):
            edges.append((arg, prod, INF))
        elif arg in fp:
            edges.append((arg, prod, L.get(arg, INF if info.unsupported else 0.0)))
    return edges
