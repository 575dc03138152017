"""Capture: ``torch.export`` followed by ``run_decompositions()`` (core ATen IR).

Every call node is mapped to the module that ran it (the innermost entry of
``nn_module_stack``); that module path is the node's *layer* for reporting and allocation.
Models returning tuples, dicts or Hugging Face ``ModelOutput`` objects work because export
flattens outputs to a list of tensors.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
from dataclasses import dataclass, field

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from certifier.errors import ExportError
from certifier.loader import LoadedModel, check_inputs_fit

#: Layer name used for nodes that no submodule owns (top-level glue).
ROOT_LAYER = "(model)"


@dataclass
class Captured:
    program: ExportedProgram
    graph: torch.fx.Graph
    #: placeholder name -> ("param" | "buffer" | "constant", tensor) or ("input", index)
    placeholders: dict[str, tuple[str, object]]
    outputs: list[torch.fx.Node | None]
    module_of: dict[str, str]  # node name -> module path ('' for the root)
    module_type: dict[str, str]  # module path -> class name
    times: dict[str, float] = field(default_factory=dict)

    def layer_of(self, node_name: str) -> str:
        return self.module_of.get(node_name) or ROOT_LAYER


_HINTS = [
    (re.compile(r"data.dependent|GuardOnDataDependent|Could not guard on data-dependent|symbolic boolean", re.I),
     "the model's Python control flow depends on input values; make the branch static or use torch.cond / torch.where"),
    (re.compile(r"DynamicCache|Cache|not a known type|pytree", re.I),
     "the model returns a non-tensor object (e.g. a Hugging Face cache): set config.use_cache=False or return tensors only"),
    (re.compile(r"Unsupported|graph break|not supported", re.I),
     "use operations torch.export supports; see https://pytorch.org/docs/stable/export.html"),
]


def _hint(msg: str) -> str:
    for pat, hint in _HINTS:
        if pat.search(msg):
            return hint
    return "make forward() traceable by torch.export: static shapes, tensor outputs, no data-dependent Python control flow"


@contextlib.contextmanager
def _quiet_torch():
    """Silence torch's loggers and stray prints while exporting (unless CERTIFY_DEBUG is set):
    a failed export otherwise dumps graphs and tracebacks on stderr."""
    if os.environ.get("CERTIFY_DEBUG"):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("torch", "torch.fx", "torch._dynamo", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes")]
    old = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            yield
    finally:
        for lg, lvl, prop in old:
            lg.setLevel(lvl)
            lg.propagate = prop


def capture(loaded: LoadedModel) -> Captured:
    """Export and decompose the model; raise :class:`ExportError` with a reason and a fix."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), _quiet_torch():
            ep = torch.export.export(loaded.module, loaded.example_inputs, strict=False)
    except Exception as e:  # noqa: BLE001 - torch.export raises many types
        # Inputs that do not fit the model get that message, not an export failure (the
        # plain forward pass runs only here, on failure: a model that exports needs none).
        check_inputs_fit(loaded.module, loaded.example_inputs)
        msg = str(e).strip().splitlines()
        first = next((ln for ln in msg if ln.strip()), type(e).__name__)
        raise ExportError(f"torch.export could not capture the model: {type(e).__name__}: {first[:300]}", _hint(str(e))) from None
    times["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        with _quiet_torch():
            ep = ep.run_decompositions()
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"decomposing the exported graph failed: {type(e).__name__}: {str(e)[:300]}") from None
    times["decompose"] = time.perf_counter() - t0

    sig = ep.graph_signature
    state = ep.state_dict
    consts = ep.constants
    placeholders: dict[str, tuple[str, object]] = {}
    user_i = 0
    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.PARAMETER:
            placeholders[name] = ("param", state[spec.target])
        elif spec.kind == InputKind.BUFFER:
            t = state[spec.target] if spec.target in state else consts[spec.target]
            placeholders[name] = ("buffer", t)
        elif spec.kind in (InputKind.CONSTANT_TENSOR, getattr(InputKind, "CUSTOM_OBJ", None)):
            placeholders[name] = ("constant", consts[spec.target])
        elif spec.kind == InputKind.USER_INPUT:
            placeholders[name] = ("input", user_i)
            user_i += 1
        else:  # token or unknown kinds
            placeholders[name] = ("other", None)
    graph = ep.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    flat, _ = torch.utils._pytree.tree_flatten(out_node.args[0])
    outputs = [a if isinstance(a, torch.fx.Node) else None for a in flat]
    module_of: dict[str, str] = {}
    module_type: dict[str, str] = {}
    for n in graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if stack:
            path, typ = list(stack.values())[-1]
            path = path if isinstance(path, str) else str(path)
            module_of[n.name] = _clean_path(path)
            module_type[module_of[n.name]] = typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1]
    return Captured(ep, graph, placeholders, outputs, module_of, module_type, times)


def _clean_path(path: str) -> str:
    """'L__self___encoder_layer_0' style keys already come resolved in recent torch; keep dotted paths."""
    return path.replace("L['self'].", "").replace("L__self__.", "")
