"""Concrete evaluation of a captured graph at given inputs (the search side of witnesses).

:func:`node_values` runs the decomposed ATen graph node by node in float64 (parameters are
converted exactly, float32 -> float64; ``dtype=float32`` arguments become float64), so every
intermediate value is available, with autograd, to the witness search. Nothing computed here
is trusted: a candidate is accepted only after :func:`enclose` (sound interval arithmetic at
the point) and the exact comparisons of :mod:`smt.exact`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from certifier.capture import Captured
from certifier.loader import LoadedModel
from certifier.walker import BoundsAnalysis, analyze_bounds

F64 = torch.float64


def _sub(v, env):
    if isinstance(v, torch.fx.Node):
        return env[v.name]
    if isinstance(v, (list, tuple)):
        return type(v)(_sub(x, env) for x in v)
    if isinstance(v, dict):
        return {k: _sub(x, env) for k, x in v.items()}
    if v is torch.float32 or v is torch.float16 or v is torch.bfloat16:
        return F64
    return v


def node_values(captured: Captured, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every node's value at ``inputs`` (float inputs as float64 tensors, possibly requiring
    grad), evaluated in float64."""
    env: dict[str, object] = {}
    for node in captured.graph.nodes:
        if node.op == "placeholder":
            kind, payload = captured.placeholders.get(node.name, ("other", None))
            if kind == "input":
                env[node.name] = inputs[int(payload)]  # type: ignore[arg-type]
            elif isinstance(payload, torch.Tensor):
                t = payload.detach()
                env[node.name] = t.to(F64) if t.is_floating_point() else t
            else:
                env[node.name] = None
        elif node.op == "call_function":
            if node.target is operator.getitem:
                src, idx = node.args
                env[node.name] = env[src.name][idx]  # type: ignore[index,union-attr]
                continue
            args = _sub(node.args, env)
            kwargs = _sub(dict(node.kwargs), env)
            env[node.name] = node.target(*args, **kwargs)  # type: ignore[operator]
    return {k: v for k, v in env.items() if isinstance(v, torch.Tensor)}


def enclose(loaded: LoadedModel, captured: Captured, inputs: Sequence[torch.Tensor]) -> BoundsAnalysis:
    """Sound enclosures of the *exact* value of every node at the point ``inputs`` (the
    analyzer's interval rules on the degenerate box, outward-rounded binary64)."""
    boxes = [(x.detach().to(F64), x.detach().to(F64)) for x in inputs]
    return analyze_bounds(loaded, captured, boxes=boxes)
