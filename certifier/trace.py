"""Concrete evaluation of a captured graph, node by node (used to check ranges against real
activations, and by the witness search of smt.witness through smt.evaluate)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from certifier.capture import Captured

F64 = torch.float64


def node_values(
    captured: Captured,
    inputs: Sequence[torch.Tensor],
    dtype: torch.dtype = F64,
    visit=None,
    *,
    grad: bool = False,
    all_dtype_args: bool = False,
) -> dict[str, object]:
    """Run the exported graph with parameters and float inputs in ``dtype``; return every
    node's value by name (tuples stay tuples).

    ``grad``: run with autograd enabled (inputs may require grad). ``all_dtype_args``: every
    float dtype argument becomes ``dtype`` (creation ops such as ``full(..., dtype=float32)``
    included), not only those of float->float casts.

    With ``visit(name, value)`` given, each value is handed to it as soon as it is computed and
    nothing is kept (the returned dict is empty): memory stays at the live set of the graph,
    which is what a ResNet-50 range check needs to fit in a CI machine."""
    env: dict[str, object] = {}
    gm = captured.program.graph_module

    def cast(t):
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point:
            return t.to(dtype)
        return t

    skip = {torch.ops.aten._assert_tensor_metadata.default}
    casts = {torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype, torch.ops.aten.to.dtype_layout}

    def promote(v):
        if isinstance(v, (list, tuple)):
            return type(v)(promote(x) for x in v)
        if isinstance(v, dict):
            return {k: promote(x) for k, x in v.items()}
        return dtype if isinstance(v, torch.dtype) and v.is_floating_point else v

    class _Interp(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            if target in skip:
                return None  # metadata checks name the export's dtypes, not the evaluation's
            if all_dtype_args:
                args, kwargs = promote(args), promote(kwargs)
            elif target in casts:
                # The exact reference treats a float->float cast as the identity (its rounding
                # is charged by the error analysis): keep the value in the evaluation dtype.
                if "dtype" in kwargs and isinstance(args[0], torch.Tensor) and args[0].dtype.is_floating_point \
                        and kwargs["dtype"] is not None and kwargs["dtype"].is_floating_point:
                    kwargs = {**kwargs, "dtype": dtype}
                elif len(args) > 1 and isinstance(args[1], torch.dtype) and args[1].is_floating_point \
                        and isinstance(args[0], torch.Tensor) and args[0].dtype.is_floating_point:
                    args = (args[0], dtype, *args[2:])
            return super().call_function(target, args, kwargs)

        def run_node(self, n):
            out = super().run_node(n)
            if visit is None:
                env[n.name] = out
            else:
                visit(n.name, out)
            return out

    args = []
    for node in captured.graph.nodes:
        if node.op != "placeholder":
            continue
        kind, payload = captured.placeholders.get(node.name, ("other", None))
        if kind == "input":
            args.append(cast(inputs[int(payload)]))  # type: ignore[arg-type]
        else:
            args.append(cast(payload))
    with torch.set_grad_enabled(grad):
        _Interp(gm).run(*args)
    return env
