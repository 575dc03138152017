"""Loading a model file (DESIGN 5.1): the model, example inputs, input domain, weights.

``certify MODEL.py`` imports the file, which runs its code (treat model files like any other
code you execute). The file provides:

* ``build_model() -> torch.nn.Module`` or a module-level ``model``;
* ``example_inputs() -> tuple[Tensor, ...]`` (a single tensor is accepted);
* optionally ``input_domain() -> list[tuple[float, float]]``: one ``(lo, hi)`` per input, an
  elementwise box for float inputs and the inclusive id range for integer inputs;
* optionally ``calibration_inputs()`` (an iterable of input tuples).

``--domain LO,HI`` overrides the domain of every float input; ``--weights ckpt.pt`` loads a
state dict with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch

from certifier.errors import InputError, ModelFileError, SpecError


@dataclass
class InputSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    lo: float
    hi: float

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point

    def to_json(self) -> dict:
        return {
            "shape": list(self.shape),
            "dtype": str(self.dtype).replace("torch.", ""),
            "domain": [self.lo, self.hi],
            "kind": "box" if self.is_float else "id_range",
        }


@dataclass
class LoadedModel:
    path: Path
    name: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    inputs: list[InputSpec]
    source_sha256: str
    weights_path: Path | None = None
    python_module: ModuleType | None = field(default=None, repr=False)

    def sample_inputs(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, ...]]:
        """n random inputs drawn uniformly from the domain (corners included for float boxes)."""
        out = []
        for k in range(n):
            xs = []
            for spec in self.inputs:
                if spec.is_float:
                    if k == 0:
                        x = torch.full(spec.shape, spec.lo, dtype=dtype)
                    elif k == 1:
                        x = torch.full(spec.shape, spec.hi, dtype=dtype)
                    elif k == 2:
                        bits = torch.randint(0, 2, spec.shape, generator=generator).to(dtype)
                        x = spec.lo + (spec.hi - spec.lo) * bits
                    else:
                        x = spec.lo + (spec.hi - spec.lo) * torch.rand(spec.shape, generator=generator, dtype=dtype)
                else:
                    x = torch.randint(int(spec.lo), int(spec.hi) + 1, spec.shape, generator=generator, dtype=spec.dtype)
                xs.append(x)
            out.append(tuple(xs))
        return out


def code_digest(path: str | Path) -> dict:
    """What the model file's code depends on besides itself, found by reading its imports
    (``ast``, so the result does not depend on what this process imported before): the
    sha256 of every local module it imports (a ``.py`` file or package beside it, followed
    recursively), and the version of every installed distribution it imports (e.g.
    ``transformers``, whose model classes build BERT and GPT-2). The standard library is left
    out. A certificate records this so that ``certify verify`` sees a change in a helper
    module or a library upgrade, not only in the model file."""
    import ast
    import importlib.metadata as md

    root = Path(path).resolve().parent
    local: dict[str, str] = {}
    packages: dict[str, str] = {}
    dists = md.packages_distributions()
    todo = [Path(path).resolve()]
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except (OSError, SyntaxError):
            continue
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        for n in sorted(names):
            cands = [root / f"{n}.py", root / n / "__init__.py"]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is not None:
                files = [hit] if hit.name != "__init__.py" else sorted(hit.parent.rglob("*.py"))
                for c in files:
                    local[str(c.relative_to(root))] = sha256_file(c)
                    todo.append(c.resolve())
            elif n not in sys.stdlib_module_names:
                for d in sorted(dists.get(n, [])):
                    try:
                        packages[d] = md.version(d)
                    except md.PackageNotFoundError:
                        pass
    return {"local": dict(sorted(local.items())), "packages": dict(sorted(packages.items()))}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_domain(text: str) -> tuple[float, float]:
    """Parse ``LO,HI`` (finite, LO <= HI)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise SpecError(f"--domain must be LO,HI (two numbers separated by a comma), got {text!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise SpecError(f"--domain must be LO,HI with numeric bounds, got {text!r}") from None
    check_domain(lo, hi, "--domain")
    return lo, hi


def check_domain(lo: float, hi: float, where: str) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise SpecError(f"{where}: the domain bounds must be finite, got ({lo}, {hi})")
    if lo > hi:
        raise SpecError(f"{where}: the domain has lo > hi ({lo} > {hi})", "write the smaller bound first: LO,HI")


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"not a file: {path}")
    name = f"_certify_model_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"cannot import {path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise ModelFileError(f"syntax error in {path}, line {e.lineno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - user code can raise anything
        sys.modules.pop(name, None)
        raise ModelFileError(f"importing {path} raised {type(e).__name__}: {e}", _user_frame(e, path)) from None
    return mod


def _user_frame(e: BaseException, path: Path) -> str | None:
    """'at FILE:LINE' of the deepest frame in the user's file, if any."""
    tb = traceback.extract_tb(e.__traceback__)
    for fr in reversed(tb):
        if Path(fr.filename).resolve() == path.resolve():
            return f"at {path.name}:{fr.lineno}: {fr.line}"
    return None


def _call(mod: ModuleType, fname: str, path: Path):
    try:
        return getattr(mod, fname)()
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{fname}() in {path} raised {type(e).__name__}: {e}", _user_frame(e, path)) from None


def load_model(
    path: str | Path,
    *,
    domain: list[tuple[float, float]] | None = None,
    weights: str | Path | None = None,
    check_forward: bool = True,
) -> LoadedModel:
    """Import a model file and validate everything the analysis needs."""
    path = Path(path)
    mod = _import_file(path)
    if hasattr(mod, "build_model"):
        model = _call(mod, "build_model", path)
    elif hasattr(mod, "model"):
        model = mod.model
    else:
        raise ModelFileError(
            f"{path} defines no model",
            "define build_model() returning a torch.nn.Module, or a module-level variable `model`",
        )
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"the model in {path} is a {type(model).__name__}, not a torch.nn.Module")
    if not hasattr(mod, "example_inputs"):
        raise ModelFileError(f"{path} defines no example_inputs()", "define example_inputs() returning a tuple of tensors")
    ex = _call(mod, "example_inputs", path)
    if isinstance(ex, torch.Tensor):
        ex = (ex,)
    if not isinstance(ex, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in ex):
        raise ModelFileError("example_inputs() must return a tensor or a tuple of tensors")
    ex = tuple(t.detach() for t in ex)

    if weights is not None:
        _load_weights(model, Path(weights))
    model.eval()
    _check_weights(model)

    # The domain: --domain overrides float inputs; input_domain() otherwise.
    given = None
    if hasattr(mod, "input_domain"):
        given = _call(mod, "input_domain", path)
        if not isinstance(given, (list, tuple)) or len(given) != len(ex):
            raise ModelFileError(f"input_domain() must return one (lo, hi) pair per input ({len(ex)} inputs)")
    if domain and not any(t.dtype.is_floating_point for t in ex):
        kinds = ", ".join(f"input {i}: {str(t.dtype).replace('torch.', '')}" for i, t in enumerate(ex))
        raise SpecError(
            f"--domain applies to float inputs, and this model has none ({kinds})",
            "declare the inclusive id range of integer inputs in input_domain() in the model file",
        )
    specs: list[InputSpec] = []
    for i, t in enumerate(ex):
        if t.dtype.is_floating_point and domain:
            lo, hi = domain[min(i, len(domain) - 1)]
        elif given is not None:
            try:
                lo, hi = (float(given[i][0]), float(given[i][1]))
            except (TypeError, ValueError, IndexError):
                raise ModelFileError(f"input_domain()[{i}] must be a (lo, hi) pair of numbers") from None
        elif not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool:
            raise ModelFileError(
                f"input {i} holds integer ids but no id range is declared",
                "define input_domain() with the inclusive id range, e.g. [(0, vocab_size - 1)]",
            )
        else:
            raise SpecError(
                f"no input domain for input {i}",
                "define input_domain() in the model file or pass --domain LO,HI",
            )
        check_domain(lo, hi, f"domain of input {i}")
        if not t.dtype.is_floating_point and (lo != int(lo) or hi != int(hi)):
            raise SpecError(f"input {i} holds integer ids: its range must be integers, got ({lo}, {hi})")
        specs.append(InputSpec(tuple(t.shape), t.dtype, lo, hi))

    if check_forward:
        check_inputs_fit(model, ex)
    return LoadedModel(
        path=path,
        name=path.stem,
        module=model,
        example_inputs=ex,
        inputs=specs,
        source_sha256=sha256_file(path),
        weights_path=Path(weights) if weights is not None else None,
        python_module=mod,
    )


def check_inputs_fit(model: torch.nn.Module, ex: tuple[torch.Tensor, ...]) -> None:
    """Run the model once on its example inputs; InputError if they do not fit it."""
    try:
        with torch.no_grad():
            model(*ex)
    except Exception as e:  # noqa: BLE001
        raise InputError(
            f"the example inputs do not fit the model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            "example_inputs() must return what model.forward() accepts (shapes, dtypes, count)",
        ) from None


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.exists():
        raise InputError(f"weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot load weights from {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise InputError(f"{path} does not hold a state dict")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InputError(f"the weights in {path} do not fit the model: {str(e).splitlines()[0]}") from None


def _all_finite(t: torch.Tensor) -> bool:
    """True when every entry is finite: its min and max are (NaN propagates through aminmax);
    one pass with no temporary of the tensor's size."""
    try:
        lo, hi = torch.aminmax(t.detach())
    except (RuntimeError, NotImplementedError):  # dtypes without aminmax (fp8): the plain way
        return bool(torch.isfinite(t.detach().float()).all())
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _check_weights(model: torch.nn.Module) -> None:
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.dtype.is_floating_point and t.numel() and not _all_finite(t):
            bad = "NaN" if bool(torch.isnan(t).any()) else "inf"
            raise InputError(f"parameter {name} contains {bad}", "a model with non-finite weights cannot be certified")
