"""View, shape and copy ops: exact element selection and rearrangement.

Ops: view, _unsafe_view, reshape, permute, expand, clone, alias, detach, contiguous,
unsqueeze, squeeze, slice, select, t, transpose, flatten, repeat, flip, roll, nearest
upsampling (upsample_nearest*, _upsample_nearest_exact*), index_select (constant index),
split, split_with_sizes, unbind, cat, stack, _to_copy, lift_fresh_copy,
_assert_tensor_metadata, constant_pad_nd (F.pad with a constant: the new elements hold the
constant, rounded to the node's format).

Every output element *is* one input element, so the output interval is the same transform
applied to ``lo`` and ``hi``; the Lipschitz constant is 1 (0 for a dropped input), the
curvature 0, and a rounding error moves with its element (no new rounding). ``_to_copy``
to another float dtype is the exception: it is a cast, so it rounds, to the coarser of the
node's format and the cast's target dtype (and the fp64 reference run rounds to the target
too); beyond the target's range it overflows.
"""

from __future__ import annotations

import math

import torch

from dataclasses import dataclass

from certifier.formats import FORMATS, Format
from certifier.interval import INF, Interval
from curvature_rules._common import ShapeError, StepError, fmag, held_in_every_format, map_configs
from curvature_rules.registry import ErrorContext, RuleInput, RuleResult, register_rule

F64 = torch.float64

aten = torch.ops.aten

#: Ops with signature (self, *non-tensor args) that only select or rearrange elements.
_SINGLE = [
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten.permute.default,
    aten.expand.default,
    aten.clone.default,
    aten.alias.default,
    aten.detach.default,
    aten.unsqueeze.default,
    aten.squeeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.slice.Tensor,
    aten.select.int,
    aten.t.default,
    aten.transpose.int,
    aten.flatten.using_ints,
    aten.repeat.default,
    aten.lift_fresh_copy.default,
    aten.contiguous.default,
    aten.unfold.default,
    aten.flip.default,
    aten.roll.default,
    # nearest resampling picks one input element per output by an index computed in
    # float32 for every dtype (curvature_rules.resample explains)
    aten.upsample_nearest1d.vec,
    aten.upsample_nearest2d.vec,
    aten.upsample_nearest3d.vec,
    aten.upsample_nearest1d.default,
    aten.upsample_nearest2d.default,
    aten.upsample_nearest3d.default,
    aten._upsample_nearest_exact1d.vec,
    aten._upsample_nearest_exact2d.vec,
    aten._upsample_nearest_exact3d.vec,
    aten._upsample_nearest_exact1d.default,
    aten._upsample_nearest_exact2d.default,
    aten._upsample_nearest_exact3d.default,
]


def _fn_of(inp: RuleInput, first: str):
    """The op applied to a replacement for its first tensor argument (other args fixed)."""
    return lambda t: inp.call_with(**{first: t})


def _first_name(inp: RuleInput) -> str:
    return next(iter(inp.args.keys()))


@register_rule(_SINGLE)
def view_rule(inp: RuleInput) -> RuleResult:
    """Exact rearrangement: the interval and the error move with their elements."""
    name = _first_name(inp)
    x = inp.tensor(name)
    fn = _fn_of(inp, name)
    out = x.map_shape(fn)
    # integers (an index an argmax computed) carry their errors with them as well
    err = ShapeError(fn, name, out.shape)
    return RuleResult(out=out, lipschitz={name: 1.0} if x.is_float else {}, curvature=0.0, error=err)


@register_rule([aten.index_select.default])
def index_select_rule(inp: RuleInput) -> RuleResult:
    """Selection by a constant index (fails closed when the index is not known)."""
    x, index = inp.tensor("self"), inp.tensor("index")
    if not index.is_point:
        raise NotImplementedError("index_select with a data-dependent index")
    dim = int(inp.args["dim"])  # type: ignore[arg-type]
    fn = lambda t: torch.index_select(t, dim, index.value)  # noqa: E731
    out = x.map_shape(fn)
    return RuleResult(out=out, lipschitz={"self": 1.0} if x.is_float else {}, error=ShapeError(fn, "self", out.shape))


_MULTI = [aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int, aten.split_with_sizes_copy.default]


@register_rule(_MULTI)
def split_rule(inp: RuleInput) -> RuleResult:
    """Exact split into several outputs (a tuple of intervals)."""
    name = _first_name(inp)
    x = inp.tensor(name)
    fn = _fn_of(inp, name)
    if x.is_point:
        outs = tuple(Interval.point(t) for t in fn(x.value))
    else:
        outs = tuple(Interval(a, b, x.dtype) for a, b in zip(fn(x.lo), fn(x.hi)))
    err = ShapeError(lambda t: tuple(fn(t)), name, tuple(o.shape for o in outs), multi=True)
    return RuleResult(out=outs, lipschitz={name: 1.0} if x.is_float else {}, error=err)


@dataclass(frozen=True)
class CatError:
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dim: int
    stack: bool

    def propagate(self, ctx: ErrorContext):
        parts = []
        for n, s in zip(self.names, self.shapes):
            e = ctx.err(n)
            parts.append(torch.zeros((ctx.F, *s), dtype=torch.float64) if e is None else e)
        d = self.dim + 1  # skip the configuration dimension
        return torch.stack(parts, d) if self.stack else torch.cat(parts, d)


@register_rule([aten.cat.default, aten.stack.default])
def cat_rule(inp: RuleInput) -> RuleResult:
    """Concatenation/stacking: exact; each input reaches its own output block (L = 1)."""
    xs = inp.args["tensors"]
    assert isinstance(xs, list)
    dim = int(inp.args.get("dim", 0) or 0)  # type: ignore[arg-type]
    stack = inp.op is aten.stack.default
    op = torch.stack if stack else torch.cat
    # Drop legacy empty 1-D tensors that cat ignores.
    ivs: list[Interval] = [x for x in xs if isinstance(x, Interval)]
    nd = len(inp.out_shapes[0]) if not stack else len(inp.out_shapes[0]) - 1
    if dim < 0:
        dim += nd + (1 if stack else 0)
    keep = [(i, x) for i, x in enumerate(ivs) if stack or not (len(x.shape) == 1 and x.shape[0] == 0 and nd != 1)]
    dtype = inp.out_dtypes[0]
    if all(x.is_point for _, x in keep):
        out = Interval.point(op([x.value.to(dtype) for _, x in keep], dim))
    else:
        out = Interval(op([x.lo for _, x in keep], dim), op([x.hi for _, x in keep], dim), dtype)
    names = tuple(f"tensors.{i}" for i, _ in keep)
    if not dtype.is_floating_point:
        return RuleResult(out=out)
    return RuleResult(
        out=out,
        lipschitz={n: 1.0 for n in names},
        error=CatError(names, tuple(x.shape for _, x in keep), dim, stack),
    )


def _dtype_format(dtype: torch.dtype) -> Format | None:
    for f in FORMATS.values():
        if f.torch_dtype == dtype and not f.compute_only:
            return f
    return None


@dataclass(frozen=True)
class IntCastError:
    """An integer-to-float cast. In a low-precision run the cast's target is the run's
    format (``ids.to(x.dtype)``, or the export's float32 read as the node's format), which
    holds integers exactly only up to 2^p: ``u |v|`` beyond, infinite past its max."""

    y: Interval

    def propagate(self, ctx: ErrorContext):
        c = ctx.int_to_format(fmag(self.y))
        e = ctx.err("self")  # an integer computed from floats (a truncation) is infinite
        return c if e is None else e + c


@dataclass(frozen=True)
class CastError:
    """A float-to-float cast to ``target``: the computed value is rounded to the coarser of
    the node's format and the target's, ``e + u'(|y| + e) + eta'/2``. NB: the cast's own
    dtype decides the rounding (``x.to(torch.bfloat16)`` rounds to 8 bits in an fp16 or fp32
    run), and a target coarser than fp64 also rounds the fp64 reference run, which adds
    ``u_t |y| + eta_t/2``; a value beyond the target's range overflows (infinite error)."""

    y: Interval
    target: Format | None

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        nd = len(self.y.shape)
        m = fmag(self.y).unsqueeze(0)
        e = torch.zeros((ctx.F, *self.y.shape), dtype=torch.float64) if e is None else e
        t = self.target
        if t is None:
            return torch.full((ctx.F, *self.y.shape), INF, dtype=torch.float64)
        u = ctx.b(torch.clamp(ctx.u, min=t.u), nd)
        he = ctx.b(torch.clamp(ctx.he, min=t.eta / 2), nd)
        out = e + u * (m + e) + he
        if t.name != "fp64":  # the reference run rounds too
            out = out + t.u * m + t.eta / 2
        return torch.where(m + e > t.max, torch.full_like(out, INF), out)


@register_rule([aten._to_copy.default, aten.to.dtype])
def to_copy_rule(inp: RuleInput) -> RuleResult:
    """Copy/cast. Float to float: the value is kept (exact semantics) and the computed
    value is rounded to the node's format. Anything involving integers: exact on points,
    monotone (truncation) otherwise; float to integer truncates (StepError), integer to
    integer keeps the value inside the type's range (IntRangeError), bool fails closed."""
    x = inp.tensor("self")
    dtype = inp.out_dtypes[0]
    if x.is_point and not (dtype.is_floating_point and x.is_float):
        return RuleResult(out=Interval.point(x.value.to(dtype)))
    if x.is_point:  # float to float: the exact value is kept, the computed one rounded
        x = Interval(x.value.to(F64), x.value.to(F64), x.dtype)
    if dtype.is_floating_point and x.is_float:
        out = Interval(x.lo, x.hi, dtype)
        return RuleResult(out=out, lipschitz={"self": 1.0}, error=CastError(out, _dtype_format(dtype)))
    if dtype.is_floating_point:  # int/bool -> float: exact below 2**53; rounded in a format
        out = Interval(x.lo, x.hi, dtype)
        return RuleResult(out=out, error=IntCastError(out) if x.dtype != torch.bool else None)
    if dtype == torch.bool:
        lo = ((x.lo > 0) | (x.hi < 0)).to(torch.float64)
        hi = ((x.lo != 0) | (x.hi != 0)).to(torch.float64)
        return RuleResult(out=Interval(lo, hi, dtype))
    # to an integer type: a float truncates toward 0 (monotone); beyond the type's range the
    # conversion is undefined (a float at +-inf, NaN) or wraps (int64 -> int32), so any value
    # of the type is possible there
    ii = torch.iinfo(dtype)
    ok = (x.lo > float(ii.min)) & (x.hi < float(ii.max))
    lo = torch.where(ok, torch.trunc(x.lo), torch.full_like(x.lo, float(ii.min)))
    hi = torch.where(ok, torch.trunc(x.hi), torch.full_like(x.hi, float(ii.max)))
    if not x.is_float:  # integer to integer: the value (and its error) kept inside the range
        return RuleResult(out=Interval(lo, hi, dtype), error=IntRangeError(x, (float(ii.min), float(ii.max))))
    return RuleResult(out=Interval(lo, hi, dtype), error=StepError(x, torch.trunc, (float(ii.min), float(ii.max))))


@dataclass(frozen=True)
class IntRangeError:
    """An integer cast to another integer type keeps its value, so its error, where the
    exact and the computed values stay inside the target type's range (a narrowing cast
    wraps beyond it: unbounded there)."""

    x: Interval
    limits: tuple[float, float]

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        if e is None:
            return None
        ok = (self.x.lo.unsqueeze(0) - e > self.limits[0]) & (self.x.hi.unsqueeze(0) + e < self.limits[1])
        return torch.where(ok, e, torch.full_like(e, INF))


@register_rule([aten._assert_tensor_metadata.default, aten._assert_scalar.default, aten.sym_constrain_range_for_size.default, aten._assert_async.msg, aten._assert_async.default])
def assert_rule(inp: RuleInput) -> RuleResult:
    """Runtime assertions have no value: a run either passes them or raises (``one_hot``'s
    class-range checks), never returns a wrong number."""
    return RuleResult(out=Interval.point(torch.zeros(0)))


@dataclass(frozen=True)
class PadError:
    """constant_pad_nd: the input's errors move with their elements; the padded positions
    hold the constant, rounded to the node's format (``u |v| + he``; 0 for a value every
    format holds exactly, such as 0, +-1, -inf)."""

    pad: tuple[int, ...]
    value: float
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def propagate(self, ctx: ErrorContext):
        e = ctx.err("self")
        F, nd = ctx.F, len(self.out_shape)
        out = None if e is None else map_configs(lambda t: aten.constant_pad_nd(t, list(self.pad), 0.0), e.expand((F, *self.in_shape)))
        if math.isinf(self.value) or held_in_every_format(self.value):
            return out
        where = aten.constant_pad_nd(torch.zeros(self.in_shape, dtype=F64), list(self.pad), 1.0).unsqueeze(0)
        c = where * (ctx.b(ctx.u, nd) * abs(self.value) + ctx.b(ctx.he, nd))
        return c if out is None else out + c  # type: ignore[operator]


@register_rule([aten.constant_pad_nd.default])
def constant_pad_rule(inp: RuleInput) -> RuleResult:
    """Padding with a constant (F.pad): the input's elements keep their intervals, the new
    ones hold the constant (negative pads crop)."""
    x = inp.tensor("self")
    pad = tuple(int(p) for p in inp.args["pad"])  # type: ignore[union-attr]
    v = float(inp.get("value", 0.0))  # type: ignore[arg-type]
    if math.isnan(v):
        raise NotImplementedError("padding with NaN")
    fn = lambda t: aten.constant_pad_nd(t, list(pad), v)  # noqa: E731
    if x.is_point:
        return RuleResult(out=Interval.point(fn(x.value)))
    out = Interval(fn(x.lo.to(F64)), fn(x.hi.to(F64)), x.dtype)
    if not x.is_float:
        return RuleResult(out=out)
    internal = abs(v) if math.isfinite(v) else 0.0
    return RuleResult(out=out, lipschitz={"self": 1.0}, curvature=0.0, error=PadError(pad, v, tuple(x.shape), tuple(out.shape)), internal_max=internal)
