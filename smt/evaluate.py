"""Concrete evaluation of a captured graph at given inputs (the search side of witnesses).

:func:`node_values` runs the decomposed ATen graph node by node in float64 (parameters are
converted exactly, float32 -> float64; ``dtype=float32`` arguments become float64), so every
intermediate value is available, with autograd, to the witness search. Nothing computed here
is trusted: a candidate is accepted only after :func:`enclose` (sound interval arithmetic at
the point) and the exact comparisons of :mod:`smt.exact`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from certifier import trace
from certifier.capture import Captured
from certifier.loader import LoadedModel
from certifier.walker import BoundsAnalysis, analyze_bounds

F64 = torch.float64


def node_values(captured: Captured, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every node's value at ``inputs`` (float inputs as float64 tensors, possibly requiring
    grad), evaluated in float64 with autograd (certifier.trace.node_values)."""
    env = trace.node_values(captured, inputs, F64, grad=True, all_dtype_args=True)
    return {k: v for k, v in env.items() if isinstance(v, torch.Tensor)}


def enclose(loaded: LoadedModel, captured: Captured, inputs: Sequence[torch.Tensor]) -> BoundsAnalysis:
    """Sound enclosures of the *exact* value of every node at the point ``inputs`` (the
    analyzer's interval rules on the degenerate box, outward-rounded binary64)."""
    boxes = [(x.detach().to(F64), x.detach().to(F64)) for x in inputs]
    return analyze_bounds(loaded, captured, boxes=boxes)
