"""A relational side domain: an l2 ball ``||y(x) - c||_2 <= rho`` around a center per node.

Interval boxes lose every correlation between the elements of a tensor. After a dense layer
with n inputs each output's box is as wide as if each output could pick its own worst input,
and the sums the error analysis pays (sum_i w_i |y_i|, one term per neuron) add those
independent worst cases. On the MLP example the box of the logits is +-33 where no input
reaches 9, and the first layer's sum of |y_i| is 1848 where the ball below allows 260.

The ball keeps one piece of joint information per node: every exact value ``y(x)`` over the
domain lies within l2 distance ``rho`` of a center ``c`` (the model evaluated in float64 at
the box center, with its own rounding folded into ``rho``). It propagates by operator norms:

* a linear map A (matmul, addmm, convolution with a known weight): ``rho' = ||A||_2 rho``,
  with ``||A||_2`` bounded rigorously (:func:`sigma_max_upper`; convolutions through the
  block-diagonalisation of a circular convolution by the DFT, :func:`conv_norm_upper`);
* relu and other elementwise functions: ``rho' = sup|f'| rho`` (relu: 1);
* batch norm (eval): ``max |scale| rho``, or, right after a convolution, the norm of the
  one affine map they make, ``||diag(scale) W||_2`` times the convolution's input radius
  (plus the convolution center's rounding); average pooling: ``sqrt(||P||_1 ||P||_inf)``;
  max pooling: sqrt(windows per element) (1 for non-overlapping windows);
* views and permutations: unchanged; a sum of two nodes: ``rho_a + rho_b``;
* anything else: no ball (the box alone is used).

Each radius is also capped by the box: ``rho <= ||max(c - lo, hi - c)||_2``.

Uses. (1) The walker intersects a linear node's box with ``c_i +- ||A_i||_2 rho_in`` (row
norms), which tightens every later range. (2) The adjoint pass (certifier.adjoint) bounds
``sup sum_i w_i |y_i|`` over box and ball together by water-filling (:func:`weighted_abs_sup`)
instead of summing per-element maxima.

Soundness of the float64 evaluation: the center is any point; what is claimed is only the
distance bound, and each step adds a bound on its own float64 rounding (a dot product of k
terms errs by at most ``gamma_k`` times the sum of absolute products, Higham Thm 3.5;
elementwise library functions are charged 16 ulps, far above their documented accuracy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certifier.interval import Interval

F64 = torch.float64
U = 2.0**-53
#: Explicit operator matrices above this many entries are not formed (no ball).
MAX_MATRIX = 2.0e7
#: Largest Gram dimension squared repeatedly by sigma_max_upper.
MAX_GRAM = 2048
#: Squarings in sigma_max_upper: overestimate at most rank^(2^-(K+2)) (1.4% at rank 4096).
SQUARINGS = 8

_SHAPE_OPS = {
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "clone", "contiguous", "alias",
    "detach", "squeeze", "unsqueeze", "flatten", "slice", "select", "lift_fresh_copy",
}
_MATMUL_OPS = {"addmm", "mm", "matmul", "bmm", "baddbmm"}


@dataclass(frozen=True)
class Ball:
    center: torch.Tensor  # float64, the node's primary shape
    radius: float  # every exact value over the domain is within this l2 distance of center


def _up(x: float) -> float:
    return x * (1 + 2.0**-40) + 2.0**-1000 if math.isfinite(x) else math.inf


def l2_upper(t: torch.Tensor) -> float:
    """An upper bound of ``||t||_2`` (float64 sum of squares of n terms, rounded up; inf or
    NaN entries give inf)."""
    return float(l2_upper_rows(t.reshape(1, -1))[0])


def l2_upper_rows(M: torch.Tensor) -> torch.Tensor:
    """:func:`l2_upper` of each row of a 2-d tensor: ``m sqrt(sum (x / m)^2)`` with m the row's
    largest magnitude (no overflow), the sum's n roundings and the sqrt covered by a relative
    ``(n + 4) 2u``, the products by 2^-40."""
    M = M.to(F64).abs()
    if M.shape[1] == 0:
        return torch.zeros(M.shape[0], dtype=F64)
    m = M.amax(1, keepdim=True)
    safe = torch.where(m > 0, m, torch.ones_like(m))
    s = ((M / safe) ** 2).sum(1, keepdim=True) * (1 + (M.shape[1] + 4) * 2 * U)
    out = (m * torch.sqrt(s))[:, 0] * (1 + 2.0**-40) + 2.0**-1000
    out = torch.where(m[:, 0] > 0, out, torch.zeros_like(out))
    return torch.where(torch.isfinite(m[:, 0]), out, torch.full_like(out, math.inf))


def box_radius(c: torch.Tensor, iv: Interval) -> float:
    """``||max(c - lo, hi - c)||_2``: the box seen as a ball around c."""
    return l2_upper(torch.maximum(c - iv.lo, iv.hi - c).clamp(min=0))


# ---------------------------------------------------------------------- spectral norms
def sigma_max_upper(M: torch.Tensor) -> torch.Tensor:
    """Rigorous upper bound of the largest singular value of ``M`` (batched over leading dims;
    real float64 or complex128).

    With ``G = M^H M`` (the smaller side): ``sigma^2 = lambda_max(G)``. The computed Gram
    errs by ``||E||_2 <= ||E||_F <= gamma_k ||M||_F^2`` (Weyl). For a symmetric H,
    ``rho(H) <= f (rho(N) + u)`` with ``f >= ||H||_F`` and ``N = fl(H / f)``, and
    ``rho(N)^2 = rho(N^2) <= rho(P) + ||P - N^2||_2`` with P the symmetrised computed square,
    ``||P - N^2||_F <= (gamma_n + 2u) ||N||_F^2``. After K squarings
    ``rho(H_K) <= ||H_K||_F``; unwinding gives the bound, which exceeds the true value by at
    most ``rank^(2^-(K+1))`` in lambda (plus rounding).
    """
    M = M.to(torch.complex128 if M.is_complex() else F64)
    # Scale each matrix by a power of two (exact) so its largest entry is in [1, 2): the
    # absolute underflow terms below are then negligible; a zero matrix has norm 0.
    amax = M.abs().amax((-2, -1)) if M.numel() else torch.zeros(M.shape[:-2], dtype=F64)
    zero = amax == 0
    scale = torch.where(zero, torch.ones_like(amax), torch.exp2(torch.floor(torch.log2(torch.where(zero, torch.ones_like(amax), amax)))))
    M = M / scale[..., None, None]
    if M.shape[-2] < M.shape[-1]:
        M = M.mH
    k, n = M.shape[-2], M.shape[-1]
    cplx = 2.0 if M.is_complex() else 1.0
    fro2 = (M.abs() ** 2).sum((-2, -1)) * (1 + (k * n + 4) * 2 * U)
    G = M.mH @ M
    G = (G + G.mH) * 0.5
    eG = fro2 * cplx * (k + 4) * 2 * U
    fs: list[torch.Tensor] = []
    H = G
    for _ in range(SQUARINGS):
        f = torch.linalg.matrix_norm(H, "fro") * (1 + (n * n + 4) * 2 * U) + 2.0**-1000
        fs.append(f)
        N = H / f[..., None, None]
        P = N @ N
        H = (P + P.mH) * 0.5
    r = torch.linalg.matrix_norm(H, "fro") * (1 + (n * n + 4) * 2 * U) + 2.0**-1000
    err = cplx * 2.1 * (n + 4) * 2 * U + 2.0**-1000
    for f in reversed(fs):
        rn = torch.sqrt(r + err) * (1 + 4 * U)
        r = f * (rn + 2 * U) * (1 + 4 * U)
    out = torch.sqrt((r + eG) * (1 + 4 * U)) * (1 + 4 * U) * scale
    return torch.where(zero, torch.zeros_like(out), out)


def conv_norm_upper(w: torch.Tensor, spatial: tuple[int, ...], stride, padding, dilation, groups: int) -> float | None:
    """Upper bound of the l2 operator norm of a zero-padded convolution with weight ``w``
    (c_out, c_in/groups, *kernel) on inputs of spatial size ``spatial``.

    The padded input embeds isometrically in a periodic grid of size ``N_d = n_d + 2 p_d``,
    on which the operator is a circular convolution; the convolution's outputs (strided or
    not) are a subset of the circular one's, because no window wraps around. A circular
    multi-channel convolution is block-diagonalised by the DFT (Sedghi, Gupta, Long, "The
    Singular Values of Convolutional Layers", ICLR 2019): its norm is the largest
    ``sigma_max(K^(f))`` over frequencies f, ``K^(f) = sum_t K_t exp(-2 pi i f.(t d) / N)``.
    K^ is evaluated directly (not by an FFT) so its rounding has a simple bound. The phase
    ``theta = 2 pi sum_d f_d t_d d_d / N_d`` is a sum of nsp quotients in [0, 1): it errs by at
    most ``2 pi u (2 nsp^2 + 2 nsp)`` (quotients, sum, 2 pi and the product), and cos / sin add
    a few ulps, so ``|E^ - E| <= (2 pi (2 nsp^2 + 2 nsp) + 8) u``; the sum of T real x complex
    products adds ``3 (T + 4) u`` of ``sum_t |K_t|`` per entry.
    """
    nsp = len(spatial)
    ks = tuple(w.shape[2:])
    Ns = tuple(spatial[d] + 2 * padding[d] for d in range(nsp))
    if any((ks[d] - 1) * dilation[d] >= Ns[d] for d in range(nsp)):
        return None
    T = math.prod(ks)
    nfreq = math.prod(Ns)
    co, ci = w.shape[0], w.shape[1]
    if nfreq * co * ci * T > 4e8 or nfreq * min(co // groups, ci) ** 2 * max(co // groups, ci) * (SQUARINGS + 2) > 4e9:
        return None
    taps = torch.stack(torch.meshgrid(*[torch.arange(k) for k in ks], indexing="ij"), -1).reshape(T, nsp)
    freqs = torch.stack(torch.meshgrid(*[torch.arange(N) for N in Ns], indexing="ij"), -1).reshape(nfreq, nsp)
    # phase (f, t) = sum_d f_d t_d dil_d / N_d, reduced mod 1 exactly in integers first
    ph = torch.zeros((nfreq, T), dtype=F64)
    for d in range(nsp):
        num = (freqs[:, d : d + 1] * (taps[:, d] * dilation[d]).unsqueeze(0)) % Ns[d]
        ph = ph + num.to(F64) / Ns[d]
    ang = -2 * math.pi * ph
    E = torch.complex(torch.cos(ang), torch.sin(ang))  # (nfreq, T)
    W = w.detach().to(F64).reshape(co, ci, T)
    g = groups
    best = 0.0
    cog = co // g
    for gi in range(g):
        Wg = W[gi * cog : (gi + 1) * cog]  # (cog, ci, T)
        Kf = torch.einsum("oit,ft->foi", Wg.to(torch.complex128), E)
        S = Wg.abs().sum(-1)  # (cog, ci)
        delta = ((2 * math.pi * (2 * nsp * nsp + 2 * nsp) + 8) * U + 3 * (T + 4) * U) * l2_upper(S)
        s = sigma_max_upper(Kf)
        best = max(best, float(s.max()) + delta)
    return _up(best)


# ---------------------------------------------------------------------- water-filling
def weighted_abs_sup(v: torch.Tensor, c: torch.Tensor, mag: torch.Tensor, rho: float) -> torch.Tensor:
    """Upper bound of ``sup sum_i v_ji |y_i|`` over ``|y_i| <= mag_i`` and ``||y - c||_2 <= rho``,
    per row j of ``v`` (J, n) (v >= 0).

    ``|y_i| <= |c_i| + t_i`` with ``t_i = |y_i - c_i|``, ``sum t_i^2 <= rho^2`` and
    ``t_i <= cap_i = max(mag_i - |c_i|, 0)``. The relaxed problem ``max sum v_i t_i`` is solved
    by ``t_i = min(cap_i, lam v_i)`` at the lam where the constraint binds (water-filling):
    with the breakpoints ``cap_i / v_i`` sorted, ``g(lam) = sum min(cap_i, lam v_i)^2`` is
    quadratic between them, so lam is found exactly per row. The objective is nondecreasing in
    lam, so lam is rounded up (2^-20) and a row whose g does not reach rho^2 there (with a
    margin for the float64 evaluation of g) keeps the box bound ``sum v_i mag_i``, which is
    never exceeded.
    """
    v = v.reshape(v.shape[0], -1).to(F64)
    J, n = v.shape
    cabs = c.reshape(1, -1).abs().to(F64)
    mag = mag.reshape(1, -1).to(F64)
    box = (v * mag).sum(1)
    if not math.isfinite(rho) or n == 0:
        return box
    cap = (mag - cabs).clamp(min=0).expand(J, n)
    base = (v * torch.minimum(cabs, mag)).sum(1)
    r2 = rho * rho
    # breakpoints: t_i saturates at lam >= cap_i / v_i (v_i = 0: never contributes)
    bp = torch.where(v > 0, cap / torch.where(v > 0, v, torch.ones_like(v)), torch.full_like(v, math.inf))
    bps, order = torch.sort(bp, dim=1)
    vs, cs = torch.gather(v, 1, order), torch.gather(cap, 1, order)
    # before breakpoint k (lam <= bps_k): saturated = first k, g = A_k + lam^2 B_k
    A = torch.cumsum(cs * cs, 1) - cs * cs  # sum of cap^2 over the first k (exclusive)
    B = (vs * vs).flip(1).cumsum(1).flip(1)  # sum of v^2 from k on (inclusive)
    with torch.no_grad():
        lam_k = torch.sqrt(((r2 - A) / torch.where(B > 0, B, torch.ones_like(B))).clamp(min=0))
    prev = torch.cat([torch.zeros((J, 1), dtype=F64), bps[:, :-1]], 1)
    ok = (A <= r2) & (B > 0) & (lam_k >= prev) & (lam_k <= bps)
    lam = torch.where(ok, lam_k, torch.full_like(lam_k, math.inf)).amin(1, keepdim=True)
    lam = lam * (1 + 2.0**-20) + 2.0**-1000
    t = torch.minimum(cap, lam * v)
    # g(lam) >= rho^2 must hold exactly, not only as computed: the computed t and their sum
    # of squares err by (n + 4) 2u relative at most, so that margin is asked for.
    reach = ((t * t).sum(1) >= r2 * (1 + (n + 6) * 2 * U)) & torch.isfinite(lam[:, 0])
    wf = (base + (v * t).sum(1)) * (1 + (n + 4) * 2 * U) + 2.0**-1000
    return torch.where(reach, torch.minimum(wf, box), box)


# ---------------------------------------------------------------------- transfer
class BallPass:
    """Computes the ball of each node as the walker visits it (see the module docstring).

    ``step`` returns the node's ball and, for linear nodes, a per-element radius
    ``|y_i - c_i| <= r_i`` the walker intersects with the node's box."""

    def __init__(self) -> None:
        self.balls: dict[str, Ball] = {}
        self._norms: dict[tuple, float | None] = {}
        self.op_norm: dict[str, float] = {}  # node -> norm of its map in the activation
        #: convolution -> (its weight times alpha, its input's ball, the l2 norm of its
        #: center's rounding), for a batch norm that follows it (see _step)
        self._conv_in: dict[str, tuple[torch.Tensor, Ball, float]] = {}

    # The rules' error models (curvature_rules) carry the maps; imported lazily to keep
    # this module free of a cycle with the walker.
    def step(self, info, nodes) -> tuple[Ball | None, torch.Tensor | None]:
        try:
            b, r = self._step(info, nodes)
        except (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError):
            return None, None
        if b is None:
            return None, None
        iv = info.primary
        rad = min(b.radius, box_radius(b.center, iv)) if iv is not None and not iv.is_point else b.radius
        if not math.isfinite(rad):
            return None, None
        b = Ball(b.center, rad)
        self.balls[info.name] = b
        return b, r

    def _in(self, nodes, pname: str) -> Ball | None:
        if pname in self.balls:
            return self.balls[pname]
        p = nodes[pname]
        if p.primary is not None and p.primary.is_point and p.primary.is_float:
            return Ball(p.primary.value.to(F64), 0.0)
        return None

    def _step(self, info, nodes):
        from curvature_rules._common import ElementwiseError, ShapeError
        from curvature_rules.linear import BilinearError
        from curvature_rules.norm import BatchNormError
        from curvature_rules.pooling import AvgPoolError, MaxPoolError

        iv = info.primary
        if iv is None or not iv.is_float or info.unsupported is not None:
            return None, None
        if info.kind == "input":
            c = (iv.lo + iv.hi) * 0.5
            return Ball(c, l2_upper(torch.maximum(c - iv.lo, iv.hi - c))), None
        if info.kind == "getitem":
            if int(info.node.args[1]) != 0:
                return None, None
            src = info.producers["self"]
            return self.balls.get(src), None
        if info.kind != "call" or info.result is None:
            return None, None
        m = info.result.error
        acts = [(a, p) for a, p in info.producers.items() if not (nodes[p].primary is not None and nodes[p].primary.is_point)]
        if len(acts) != 1:
            return self._sum(info, nodes)
        arg, p = acts[0]
        bin_ = self.balls.get(p)
        if bin_ is None:
            return None, None
        if isinstance(m, BilinearError):
            return self._linear(info, m, arg, bin_)
        if isinstance(m, ShapeError) and not m.multi and info.op in _SHAPE_OPS and arg == m.arg:
            c = m.fn(bin_.center)
            if not isinstance(c, torch.Tensor) or c.numel() > bin_.center.numel():
                return None, None
            return Ball(c.to(F64), bin_.radius), None
        if isinstance(m, ElementwiseError) and arg == m.arg:
            if info.op == "relu":
                return Ball(torch.relu(bin_.center), bin_.radius), None
            xin = nodes[p].primary
            # |f(y) - f(c)| <= sup|f'| on the segment [y, c]: the box's hull with the center
            c0 = bin_.center
            L = float(m.dsup(torch.minimum(xin.lo, c0), torch.maximum(xin.hi, c0)).max()) if xin.numel() else 0.0
            c = self._eval(info, nodes, {p: bin_.center})
            if c is None or not math.isfinite(L):
                return None, None
            d = l2_upper(c.abs() * 2.0**-49 + 2.0**-1000)
            return Ball(c, _up(L * (1 + 2.0**-40) * bin_.radius + d)), None
        if isinstance(m, BatchNormError) and arg == "input":
            nd = len(m.x.shape)
            shp = (1, -1) + (1,) * (nd - 2)
            rm = m.rm.reshape(shp)
            s = m.scale.reshape(shp)
            b = (m.b if m.b is not None else torch.zeros_like(m.scale)).reshape(shp)
            c = (bin_.center - rm) * s + b
            d = l2_upper(((bin_.center - rm).abs() * s.abs() + b.abs()) * 2.0**-47 + 2.0**-1000)
            L = float(m.scale.abs().max()) * (1 + 2.0**-47)
            rad = _up(L * bin_.radius + d)
            fused = self._conv_in.get(p)
            if fused is not None and nd >= 3:
                # batch norm after a convolution: y = diag(s) (W x + bias - rm) + b is one
                # affine map of the convolution's input x, of norm ||diag(s) W|| (scaling W's
                # output channels), at most max|s| ||W|| and on the CNN example 1.6x below
                # it. Its center's rounding: max|s| times the convolution's, plus d.
                W, bx, dconv = fused
                Ws = W * m.scale.to(F64).reshape((-1,) + (1,) * (W.dim() - 1))
                S = map_norm(nodes[p], True, Ws, bx.center.shape)
                if S is not None:
                    # Ws differs from the exact diag(s) W entrywise by at most 2^-49 |Ws|
                    # (s's own rounding, well under 2^-50 relative, and the product's
                    # 2^-53), whose operator norm the Schur test bounds by
                    # sqrt(max row sum x max column sum) of |Ws| (each kernel weight is one
                    # matrix entry per output; an input meets each tap at most once).
                    A = Ws.abs()
                    schur = math.sqrt(float(A.reshape(A.shape[0], -1).sum(1).max()) * float(A.transpose(0, 1).reshape(A.shape[1], -1).sum(1).max()))
                    S = S + 2.0**-49 * schur
                    rad = min(rad, _up(S * bx.radius + L * dconv + d))
            return Ball(c, rad), None
        if isinstance(m, AvgPoolError) and arg == "self":
            from curvature_rules.pooling import _batched

            c = m.fn(bin_.center)
            ones = torch.ones_like(bin_.center)
            row = float(m.fn(ones).max())
            _, vjp = torch.func.vjp(m.fn, ones)
            col = float(vjp(torch.ones_like(c))[0].max())
            S = math.sqrt(row * col) * (1 + (m.k + 8) * 2 * U)
            d = l2_upper(_batched(m.fn, bin_.center.abs().unsqueeze(0), m.nsp)[0] * (m.k + 4) * 2 * U + 2.0**-1000)
            return Ball(c, _up(S * bin_.radius + d)), None
        if isinstance(m, MaxPoolError) and arg == "self":
            args = list(info.node.args) + [None] * 6
            ks = list(args[1])
            st = list(args[2]) if args[2] else ks
            dil = list(args[4]) if args[4] is not None else [1]
            if any(v != 1 for v in dil):
                return None, None
            nsp = len(ks)
            st = st * nsp if len(st) == 1 else st
            ks = ks * nsp if len(ks) == 1 else ks
            mult = math.prod(math.ceil(k / s) for k, s in zip(ks, st))
            c = m.fn(bin_.center)
            c = c[0] if isinstance(c, (tuple, list)) else c
            # |max_W(a) - max_W(b)| <= max_{j in W} |a_j - b_j|; each element is in at most
            # ``mult`` windows, so the sum of squares grows by at most mult.
            return Ball(c.to(F64), _up(math.sqrt(mult) * bin_.radius)), None
        return None, None

    def _sum(self, info, nodes):
        """add / sub of two activations (a point operand has radius 0)."""
        if info.op not in ("add", "sub"):
            return None, None
        balls = {}
        for a, p in info.producers.items():
            b = self._in(nodes, p)
            if b is None:
                return None, None
            balls[a] = b
        if len(info.node.args) > 2:
            return None, None  # alpha passed positionally: not read here
        alpha = info.node.kwargs.get("alpha", 1)
        c = self._eval(info, nodes, {p: balls[a].center for a, p in info.producers.items()})
        if c is None or not isinstance(alpha, (int, float)):
            return None, None
        rad = 0.0
        for a, b in balls.items():
            dup = c.numel() / max(b.center.numel(), 1)
            scale = abs(alpha) if a == "other" else 1.0
            rad += scale * math.sqrt(dup) * b.radius
        d = l2_upper(c.abs() * 2.0**-51 + 2.0**-1000)
        return Ball(c, _up(rad + d)), None

    def _eval(self, info, nodes, centers: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The node's op at the centers (float64; point inputs at their values)."""
        def sub(a):
            if isinstance(a, torch.fx.Node):
                if a.name in centers:
                    return centers[a.name]
                iv = nodes[a.name].primary
                if iv is not None and iv.is_point:
                    v = iv.value
                    return v.to(F64) if v.is_floating_point() else v
                raise ValueError("no center")
            if isinstance(a, (list, tuple)):
                return type(a)(sub(x) for x in a)
            return a

        if "dtype" in info.node.kwargs:
            return None  # a dtype change is not an op on the center
        args = sub(tuple(info.node.args))
        kwargs = {k: sub(v) for k, v in info.node.kwargs.items()}
        out = info.node.target(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return None
        out = out.to(F64)
        return out if bool(torch.isfinite(out).all()) else None

    def _linear(self, info, m, arg: str, bin_: Ball):
        """y = alpha op(x, W) + beta bias with exactly one activation operand x."""
        on_a = arg == m.a_name
        if arg not in (m.a_name, m.b_name):
            return None, None
        W_iv = m.B if on_a else m.A
        if not W_iv.is_point:
            return None, None
        W = W_iv.value.to(F64)
        fn = (lambda x, w: m.op(x, w)) if on_a else (lambda x, w: m.op(w, x))
        S = self._norm(info, m, on_a, W, bin_.center.shape)
        if S is None:
            return None, None
        self.op_norm[info.name] = S
        alpha = abs(m.alpha)
        c = fn(bin_.center, W) * m.alpha
        dot = fn(bin_.center.abs(), W.abs()) * alpha
        if m.bias is not None:
            if not m.bias.is_point:
                return None, None
            bv = m.bias.value.to(F64) * m.beta
            c = c + bv
            dot = dot + bv.abs()
        delta = dot * ((m.k + 4) * 2 * U) + 2.0**-1000
        rows = torch.sqrt(fn(torch.ones_like(bin_.center), W * W).clamp(min=0)) * (1 + (m.k + 4) * 2 * U)
        r = rows * (alpha * bin_.radius) * (1 + 2.0**-40) + delta
        dl2 = l2_upper(delta)
        if info.op == "convolution" and on_a:
            self._conv_in[info.name] = (W * m.alpha, bin_, dl2)
        return Ball(c, _up(alpha * S * bin_.radius + dl2)), r

    def _norm(self, info, m, on_a: bool, W: torch.Tensor, xshape) -> float | None:
        key = (info.producers[m.b_name if on_a else m.a_name], on_a, tuple(xshape))
        if key not in self._norms:
            self._norms[key] = map_norm(info, on_a, W, xshape)
        return self._norms[key]


def map_norm(info, on_a: bool, W: torch.Tensor, xshape) -> float | None:
    """Rigorous l2 norm bound of the linear map ``x -> op(x, W)`` (or ``op(W, x)``) of a
    matmul or (non-transposed) convolution node; None where none is computed."""
    S: float | None = None
    if info.op == "convolution":
        a = info.node.args
        if on_a and not bool(a[6]):  # not transposed
            S = conv_norm_upper(W, tuple(xshape[2:]), list(a[3]), list(a[4]), list(a[5]), int(a[8]))
    elif info.op in _MATMUL_OPS and W.dim() >= 2:
        Wm = W.to(F64).reshape(-1, W.shape[-2], W.shape[-1])
        # x @ W (or W @ x) acts on each matrix of the batch separately with the same
        # (broadcast) W, or batch-wise: the norm is the largest over W's matrices.
        if min(Wm.shape[-2:]) <= MAX_GRAM and Wm.numel() <= MAX_MATRIX:
            S = float(sigma_max_upper(Wm).max())
    return None if S is None else _up(S)
