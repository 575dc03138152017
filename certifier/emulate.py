"""Running a model, op by op, in formats PyTorch has no kernels for (fp8, tf32), for
``--validate`` and the tests (DESIGN 7: every certificate is checked by running the model in
its formats).

The emulation follows the arithmetic model the bounds assume (certifier.formats, DESIGN 3)
and takes, wherever that model leaves a choice, the choice that errs most:

* every float tensor an ATen op reads is first rounded to the storage format of the op's
  layer (a value crossing into a layer of another format is rounded on entry; parameters
  and model inputs are rounded where they are read);
* the op computes in the accumulation format (float32; float64 for fp64 layers) and its
  float outputs are rounded to the storage format;
* tf32 layers store fp32 and round the two multiplicands of every matmul and convolution to
  11 significand bits *by truncation* (Triton's tf32 dot and some vendors' kernels truncate;
  cuBLAS rounds; the model covers both);
* rounding is to nearest, ties to even, in one step from the float64 value (``round_to``;
  PyTorch's float64 -> float8 cast goes through float32 and can round twice), with gradual
  underflow; fp8_e4m3 saturates at 448 as float8_e4m3fn does, the other formats overflow to
  inf.

The layer of an op is the innermost module on the call stack that the assignment names (the
module path, as in the certificate's ``layers``); ops outside every named module run in
``default``. Ops are seen at the dispatcher, after autograd and composite decompositions,
which is close to (not always identical with) the exported graph the analysis walks; an op
that the graph decomposes further rounds fewer intermediate values here, so a run is one
admissible execution under the model, not the worst one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from certifier.capture import ROOT_LAYER
from certifier.formats import FORMATS, Format

F64 = torch.float64
aten = torch.ops.aten

#: Ops whose first two float tensor arguments are multiplicands (tf32 rounds them).
_PRODUCTS = {
    aten.mm.default: (0, 1),
    aten.bmm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.baddbmm.default: (1, 2),
    aten.convolution.default: (0, 1),
    aten.matmul.default: (0, 1),
    aten.linear.default: (0, 1),
}


def _spacing(x: torch.Tensor, f: Format, p: int) -> torch.Tensor:
    """The spacing of ``f``'s values (p significand bits) around each element of x: 2^(E-p+1)
    with E the exponent of x's binade, never below the smallest normal's (gradual underflow)."""
    emin = round(torch.log2(torch.tensor(f.min_normal, dtype=F64)).item())
    _, e = torch.frexp(x)  # x = m 2^e with 0.5 <= |m| < 1: the binade is [2^(e-1), 2^e)
    return torch.ldexp(torch.ones_like(x), (torch.clamp(e - 1, min=emin) - p + 1).to(torch.int32))


def round_to(t: torch.Tensor, fmt: Format | str, *, truncate: bool = False, p: int | None = None) -> torch.Tensor:
    """``t`` (float64) rounded to ``fmt`` in one step, as a float64 tensor.

    Round to nearest even (``truncate``: toward zero), ``p`` significand bits (default the
    format's), gradual underflow below the format's smallest normal, and overflow past its
    max to inf (fp8_e4m3: saturation at 448, as float8_e4m3fn casts do)."""
    f = FORMATS[fmt] if isinstance(fmt, str) else fmt
    p = f.p if p is None else p
    x = t.to(F64)
    if f.name == "fp64" and p == 53:
        return x
    spacing = _spacing(x, f, p)
    q = x / spacing  # exact: a power-of-two scaling well inside float64's range
    q = torch.trunc(q) if truncate else torch.round(q)  # torch.round: half to even
    r = q * spacing
    big = r.abs() > f.max
    if bool(big.any()):
        sat = torch.sign(r) * f.max
        r = torch.where(big, sat if f.name == "fp8_e4m3" else torch.sign(r) * torch.inf, r)
    return torch.where(torch.isfinite(x), r, x)


def neighbours(t: torch.Tensor, fmt: Format | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b): consecutive values of ``fmt`` with a <= t < b (float64; no overflow
    handling)."""
    f = FORMATS[fmt] if isinstance(fmt, str) else fmt
    x = t.to(F64)
    spacing = _spacing(x, f, f.p)
    a = torch.floor(x / spacing) * spacing
    return a, a + spacing


class _Rounding(TorchDispatchMode):
    def __init__(self, owner: "Emulated") -> None:
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fmt = self.owner.current()
        if fmt.name == "fp64":
            return func(*args, **kwargs)
        st = fmt.storage
        mutable = func._schema.is_mutable
        if mutable:
            # In-place / out= ops: compute in place (float64, at least as accurate as the
            # accumulation format) and round what they wrote (only that: a tensor they only
            # read may be the caller's).
            out = func(*args, **kwargs)
            schema = func._schema.arguments
            named = dict(zip((a.name for a in schema), args)) | kwargs
            for arg in schema:
                a = named.get(arg.name)
                if arg.alias_info is not None and arg.alias_info.is_write and isinstance(a, torch.Tensor) and a.is_floating_point():
                    with torch.no_grad():
                        a.copy_(round_to(a, st).to(a.dtype))
            return out
        prod = _PRODUCTS.get(func, ()) if fmt.compute_only else ()

        def rd(i_t):
            i, a = i_t
            if not (isinstance(a, torch.Tensor) and a.is_floating_point()):
                return a
            r = round_to(a, st)
            if i in prod:
                r = round_to(r, fmt, truncate=True)
            return r.to(torch.float32)

        new_args = [rd((i, a)) for i, a in enumerate(args)]
        new_kwargs = {k: rd((-1, v)) for k, v in kwargs.items()}
        out = func(*new_args, **new_kwargs)
        return tree_map(lambda o: round_to(o, st) if isinstance(o, torch.Tensor) and o.is_floating_point() else o, out)


class Emulated(torch.nn.Module):
    """``model`` run op by op in the formats of ``formats`` ({module path: format}; ``""`` or
    ``"(model)"`` for the root, ``"*"`` for every layer), float64 in and float64 out."""

    def __init__(self, model: torch.nn.Module, formats: Mapping[str, str], default: str = "fp32") -> None:
        super().__init__()
        for f in formats.values():
            if f not in FORMATS:
                raise KeyError(f"unknown format {f!r}")
        fm = {("" if k == ROOT_LAYER else k): v for k, v in formats.items()}
        self.default = FORMATS[fm.pop("*", fm.get("", default))]
        self.formats = {k: FORMATS[v] for k, v in fm.items()}
        self.inner = copy.deepcopy(model).to(F64).eval()
        stores = {f.storage.name for f in self.formats.values()} | {self.default.storage.name}
        if len(stores) == 1:
            store = FORMATS[next(iter(stores))]
            # One storage format everywhere: store the parameters rounded (every read rounds
            # them to that format anyway), so that the adversarial search's quantized
            # reference (certifier.validate) sees the rounded weights. Not done for mixed
            # assignments: a weight read by a layer of a coarser format must be rounded once,
            # from its own value.
            with torch.no_grad():
                for t in list(self.inner.parameters()) + list(self.inner.buffers()):
                    if t.is_floating_point():
                        t.copy_(round_to(t, store))
        self._stack: list[str] = []
        for name, mod in self.inner.named_modules():
            if name in self.formats and name != "":
                mod.register_forward_pre_hook(self._enter(name))
                mod.register_forward_hook(self._leave)

    def _enter(self, name: str):
        def hook(_module, _args) -> None:
            self._stack.append(name)

        return hook

    def _leave(self, _module, _args, _out) -> None:
        self._stack.pop()

    def current(self) -> Format:
        if self._stack:
            return self.formats[self._stack[-1]]
        return self.formats.get("", self.default)

    def forward(self, *args):
        self._stack.clear()
        args = tuple(a.to(F64) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        with torch.no_grad(), _Rounding(self):
            return self.inner(*args)


__all__ = ["Emulated", "neighbours", "round_to"]
