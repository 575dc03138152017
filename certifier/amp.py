"""Mixed-precision configs: export a certified assignment, and run a model under one.

A config (``amp.json``, schema ``certify-amp/1``) maps module paths to dtypes::

    {
      "schema": "certify-amp/1",
      "certificate_sha256": "<body_sha256 of the certificate it came from>",
      "model": {"name": ..., "source_sha256": ..., "weights_sha256": ...},
      "eps": 1e-3, "bound": 4.2e-4,
      "default": "fp32",
      "modules": {"encoder.layer.0.attention.self.query": {"dtype": "bf16", "bound_share": 0.01}, ...}
    }

``""`` (or ``"(model)"``) is the root module. :func:`apply_precision` returns a copy of the
model in which every listed module stores its *own* parameters and float buffers in its
dtype, casts float tensors entering it to that dtype, and casts its outputs back to the
dtype of the nearest listed ancestor, so the operations written in a module's own
``forward`` run in that module's dtype. This is exactly the arithmetic the certificate
analysed: a tensor crossing into a layer of another format is rounded once on entry; inputs of
the model are rounded once, by the first listed submodule that reads them (the root module does
not cast inputs; root-level operations that read an input directly run in a wider dtype, which
only removes rounding). PyTorch's CPU kernels
and CUDA kernels accumulate fp16/bf16 matmuls and reductions in fp32; on CUDA the reduced
precision reduction flags must stay off (apply_precision turns them off and disables tf32,
which can only make tf32 layers more accurate than certified).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from certifier.capture import ROOT_LAYER
from certifier.errors import InputError
from certifier.formats import FORMATS

AMP_SCHEMA = "certify-amp/1"

_RUN_DTYPE = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "tf32": torch.float32,  # tf32 is a kernel mode; running fp32 is at least as accurate
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def run_dtype(fmt: str) -> torch.dtype:
    if fmt not in FORMATS:
        raise InputError(f"unknown dtype {fmt!r} in the config", f"known: {', '.join(FORMATS)}")
    if fmt not in _RUN_DTYPE:
        raise InputError(
            f"{fmt} cannot be executed by apply_precision (PyTorch has no general {fmt} kernels)",
            "export the config for a runtime with FP8 support, or certify without fp8 formats",
        )
    return _RUN_DTYPE[fmt]


def _cast_tree(obj, dtype: torch.dtype):
    def f(t):
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point and t.dtype != dtype:
            return t.to(dtype)
        return t

    return torch.utils._pytree.tree_map(f, obj)


def apply_precision(model: torch.nn.Module, config: Mapping[str, object], *, inplace: bool = False) -> torch.nn.Module:
    """A model that runs each configured module in its dtype (see the module docstring).

    ``config`` is an amp.json dict, or a plain ``{module_path: fmt}`` mapping.
    """
    modules = config.get("modules", config) if isinstance(config, Mapping) else config
    default = config.get("default") if isinstance(config, Mapping) and "modules" in config else None
    fmts: dict[str, str] = {}
    for path, v in modules.items():  # type: ignore[union-attr]
        fmt = v["dtype"] if isinstance(v, Mapping) else v
        fmts["" if path == ROOT_LAYER else str(path)] = str(fmt)
    m = model if inplace else copy.deepcopy(model)
    named = dict(m.named_modules())
    for path in fmts:
        if path not in named:
            raise InputError(f"the config names module {path!r}, which the model does not have")
    del default  # modules missing from the config keep the model's own dtype
    dtypes = {p: run_dtype(f) for p, f in fmts.items()}
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    def parent_dtype(path: str) -> torch.dtype | None:
        while path:
            path = path.rsplit(".", 1)[0] if "." in path else ""
            if path in dtypes:
                return dtypes[path]
        return None

    for path, dt in dtypes.items():
        mod = named[path]
        for name, p in list(mod.named_parameters(recurse=False)):
            p.data = p.data.to(dt)
        for name, b in list(mod.named_buffers(recurse=False)):
            if b.dtype.is_floating_point:
                setattr(mod, name, b.to(dt))
        up = parent_dtype(path)

        def pre(module, args, kwargs, dt=dt):
            return _cast_tree(args, dt), _cast_tree(kwargs, dt)

        if path == "":
            # NB: the root does not cast the model's inputs: each input is rounded once, by the
            # first listed submodule that reads it (as analysed). Root-level ops that read an
            # input directly then run in a wider dtype, which only removes rounding.
            mod.register_forward_hook(lambda module, args, kwargs, out: out, with_kwargs=True)
            continue

        def post(module, args, kwargs, out, up=up):
            return out if up is None else _cast_tree(out, up)

        mod.register_forward_pre_hook(pre, with_kwargs=True)
        mod.register_forward_hook(post, with_kwargs=True)
    return m.eval()


def export_config(cert: dict, formats: Mapping[str, str], shares: Mapping[str, float | None]) -> dict:
    """The amp.json dict for a certificate's assignment."""
    mods = {}
    for layer, f in sorted(formats.items()):
        path = "" if layer == ROOT_LAYER else layer
        mods[path] = {"dtype": f, "bound_share": shares.get(layer)}
    return {
        "schema": AMP_SCHEMA,
        "certificate_sha256": cert.get("body_sha256"),
        "model": {k: cert["model"].get(k) for k in ("name", "source_sha256", "weights_sha256")},
        "eps": cert["spec"]["eps"],
        "bound": cert["assignment"]["bound"],
        "certified": cert["assignment"]["certified"],
        "default": "fp32",
        "modules": mods,
        "exports": {"autocast_exclude": autocast_exclusions({"modules": mods})},
    }


def load_config(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise InputError(f"config not found: {p}")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or cfg.get("schema") != AMP_SCHEMA or not isinstance(cfg.get("modules"), dict):
        raise InputError(f"{p} is not a certify AMP config (schema {AMP_SCHEMA})")
    for path, v in cfg["modules"].items():
        fmt = v.get("dtype") if isinstance(v, dict) else None
        if fmt not in FORMATS:
            raise InputError(f"{p}: module {path!r} has dtype {fmt!r}, not one of {', '.join(FORMATS)}")
    return cfg


# ------------------------------------------------------------------ exports to other tools
_LOW = {"bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "tf32"}


def autocast_exclusions(config: Mapping[str, object]) -> list[str]:
    """Modules that must run outside ``torch.autocast``: those certified only in fp32 or fp64.

    Wrap each listed module's forward in ``torch.autocast(device_type, enabled=False)`` (and
    cast its inputs to float32); everything else may run under autocast. The mapping is exact
    for modules whose certified format is fp32/fp64; autocast's own choice of low-precision
    dtype for the other modules is *not* certified by this list alone (use apply_precision).
    """
    mods = config.get("modules", {})
    return sorted(p for p, v in mods.items() if (v["dtype"] if isinstance(v, Mapping) else v) in ("fp32", "fp64"))  # type: ignore[union-attr]


def onnx_module_path(node_name: str, metadata: Mapping[str, str] | None = None) -> str | None:
    """The PyTorch module path an ONNX node came from.

    torch.onnx's TorchScript exporter names nodes ``/encoder/layer.0/attention/self/query/MatMul``
    (the module path with "/" separators, then the op); the dynamo exporter records the scope in
    the ``pkg.torch.onnx.name_scopes`` metadata (a list whose last entry is the innermost module).
    """
    if metadata:
        scopes = metadata.get("pkg.torch.onnx.name_scopes")
        if scopes:
            try:
                items = json.loads(scopes.replace("'", '"'))
                if items:
                    return str(items[-1])
            except (json.JSONDecodeError, TypeError):
                pass
    if node_name.startswith("/"):
        parts = node_name.strip("/").split("/")
        return ".".join(parts[:-1])
    return None


def ort_block_lists(config: Mapping[str, object], nodes: list[tuple[str, dict[str, str]]]) -> dict:
    """``node_block_list`` for onnxruntime's float16 converter: the ONNX nodes of modules
    certified only in fp32/fp64 (they must stay float32). ``nodes`` are (name, metadata) pairs
    from the exported ONNX graph; nodes whose module cannot be determined are listed under
    ``unmapped`` (and should be blocked too, to stay on the safe side)."""
    keep = set(autocast_exclusions(config))
    mods = set(config.get("modules", {}))  # type: ignore[arg-type]
    block, unmapped = [], []
    for name, meta in nodes:
        path = onnx_module_path(name, meta)
        if path is None:
            unmapped.append(name)
            continue
        # The innermost configured module that contains the node decides.
        p = path
        while p not in mods and p:
            p = p.rsplit(".", 1)[0] if "." in p else ""
        if p in keep or (p not in mods):
            block.append(name)
    return {"op_block_list": [], "node_block_list": sorted(block), "unmapped": sorted(unmapped)}


def onnx_nodes(path: str | Path) -> list[tuple[str, dict[str, str]]]:
    """(name, metadata) of every node of an ONNX file (needs the optional ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        raise InputError("reading an ONNX file needs the onnx package", "pip install onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read ONNX file {path}: {e}") from None
    return [(n.name, {p.key: p.value for p in n.metadata_props}) for n in model.graph.node]


def check_config(config: Mapping[str, object], model: torch.nn.Module, cert: Mapping[str, object] | None) -> list[str]:
    """Problems that make a config unusable for this model (and certificate)."""
    problems = []
    named = dict(model.named_modules())
    for path, v in config.get("modules", {}).items():  # type: ignore[union-attr]
        p = "" if path == ROOT_LAYER else path
        if p not in named:
            problems.append(f"unknown module path {path!r}")
        fmt = v.get("dtype") if isinstance(v, Mapping) else v
        if fmt not in FORMATS:
            problems.append(f"module {path!r}: unknown dtype {fmt!r}")
        elif fmt not in _RUN_DTYPE:
            problems.append(f"module {path!r}: {fmt} cannot be executed by PyTorch kernels")
    if cert is not None:
        want = config.get("certificate_sha256")
        have = cert.get("body_sha256")
        if want != have:
            problems.append(f"certificate hash mismatch: the config was made from {str(want)[:16]}..., the certificate is {str(have)[:16]}...")
    return problems
