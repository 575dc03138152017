"""Concrete evaluation of a captured graph, node by node (used to check ranges against real
activations, and by witness search)."""

from __future__ import annotations

import torch

from certifier.capture import Captured

F64 = torch.float64


def node_values(captured: Captured, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype = F64, visit=None) -> dict[str, object]:
    """Run the exported graph with parameters and float inputs in ``dtype``; return every
    node's value by name (tuples stay tuples).

    With ``visit(name, value)`` given, each value is handed to it as soon as it is computed and
    nothing is kept (the returned dict is empty): memory stays at the live set of the graph,
    which is what a ResNet-50 range check needs to fit in a CI machine."""
    env: dict[str, object] = {}
    gm = captured.program.graph_module

    def cast(t):
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point:
            return t.to(dtype)
        return t

    class _Interp(torch.fx.Interpreter):
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
    with torch.no_grad():
        _Interp(gm).run(*args)
    return env
