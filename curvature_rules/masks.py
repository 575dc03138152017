"""Attention masks that hold ``torch.finfo(dtype).min`` instead of -inf.

Such a mask (GPT-2's ``where(causal, scores, finfo.min)``, Llama's additive mask,
``masked_fill(mask, finfo.min)``) is read as a *marker* -- "at most -2^64 in both the exact
and the computed run", written as an exact -inf in the interval -- when every use of it
leads only into a softmax (:func:`mask_safe`). certifier.walker substitutes the markers in
known tensors, curvature_rules.logical in scalar where / masked_fill branches; the add
rule keeps them (the other operand within ``MARKER_SLACK``), the softmax gives 0 there and
charges the exact term, below ``exp(-2^63)``, as one float64 step (curvature_rules.softmax).
"""

from __future__ import annotations

import torch

aten = torch.ops.aten

#: Attention masks hold the dtype's most negative finite value (``torch.finfo(dtype).min``,
#: about -2^128) where a score is excluded: values this large become markers.
MASK_MIN = 2.0**100
#: Ops a mask value may pass through on its way to a softmax (each keeps it <= -2^64).
_MASK_TRANSIT = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.permute.default,
    aten.transpose.int, aten.t.default, aten.expand.default, aten.slice.Tensor, aten.select.int,
    aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default,
    aten.clone.default, aten.alias.default, aten.cat.default, aten._to_copy.default,
    aten.where.self, aten.masked_fill.Tensor, aten.add.Tensor, aten.sub.Tensor,
}
_MASK_SINKS = {aten._softmax.default, aten.softmax.int}


def mask_safe(node: torch.fx.Node, memo: dict[str, bool], depth: int = 0) -> bool:
    """Every use of ``node`` leads, through ops of ``_MASK_TRANSIT`` only, into the input of
    a softmax: as the branch of a where or masked_fill (not its condition), an add / sub
    operand, a float cast, a view or a slice. At most 64 ops deep."""
    if node.name in memo:
        return memo[node.name]
    ok = depth < 64 and bool(node.users)
    for user in node.users if ok else ():
        if user.target in _MASK_SINKS:
            ok = bool(user.args) and user.args[0] is node and all(a is not node for a in user.args[1:])
        elif user.target in _MASK_TRANSIT:
            if user.target is aten.where.self:
                ok = bool(user.args) and user.args[0] is not node
            elif user.target is aten.masked_fill.Tensor:
                ok = len(user.args) > 1 and user.args[1] is not node
            elif user.target in (aten.add.Tensor, aten.sub.Tensor):
                ok = float(user.kwargs.get("alpha", 1)) == 1.0
            elif user.target is aten._to_copy.default:
                dt = user.kwargs.get("dtype")
                ok = dt is None or (isinstance(dt, torch.dtype) and dt.is_floating_point)
            ok = ok and mask_safe(user, memo, depth + 1)
        else:
            ok = False
        if not ok:
            break
    memo[node.name] = ok
    return ok
