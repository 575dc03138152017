"""Where the MLP's bound/observed ratio goes: the worst case over the input box (issue 3).

``benchmarks/tightness.py`` splits bound / observed into "domain" (bound over the box / bound
at the worst observed input) and "at x*". This script measures the domain part on the MLP
example (784 -> 256 -> 256 -> 10, relu, inputs in [0, 1]^784) three ways, to tell how much of
it a stronger *sound* domain could win back:

1. Ranges of each layer's pre-activations: our interval ranges (boxes alone, and boxes
   intersected with the l2 ball of certifier.ball, the default), a linear-relaxation
   (back-substitution) bound in the style of CROWN (Zhang et al., "Efficient Neural Network
   Robustness Certification with General Activation Functions", NeurIPS 2018: relu upper
   line through (l, 0) and (u, u), lower line of slope 0 or 1), and the largest value a
   signed-gradient ascent finds (a lower bound on the true maximum).
2. The error functional that dominates the box analysis: a sum over first-layer neurons of
   (weight) x (that neuron's activation). The box analysis pays every neuron at its own
   worst input (``independent``); a linear relaxation maximises one linear function of x
   (``relaxed``, exact over the box); the ball bounds it by water-filling
   (``relu(z) = (|z| + z) / 2``, certifier.ball.weighted_abs_sup); ascent gives a lower bound
   on the true maximum.
3. The certified fp16 bound over the box (boxes alone, and with the ball), the largest
   certified bound at a single point that an ascent on the inputs finds, and the largest
   observed error.
4. The CNN example (conv-bn-relu-maxpool, conv-bn-relu-avgpool, linear; [0, 1]^784): the
   range of each convolution's and the head's output, ours (boxes and ball) against the
   largest value an ascent finds.

    python benchmarks/domain_gap.py
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from certifier.adjoint import certified_errors  # noqa: E402
from certifier.ball import weighted_abs_sup  # noqa: E402
from certifier.capture import capture  # noqa: E402
from certifier.formats import FORMATS  # noqa: E402
from certifier.loader import load_model  # noqa: E402
from certifier.validate import cast_model, observe  # noqa: E402
from certifier.walker import analyze_bounds  # noqa: E402

F64 = torch.float64


def _layers(model: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.weight.detach().to(F64), m.bias.detach().to(F64)) for m in model if isinstance(m, torch.nn.Linear)]


def _box(A: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """max over lo <= x <= hi of A x + c (exact for a box)."""
    return A @ ((lo + hi) / 2) + c + A.abs() @ ((hi - lo) / 2)


def _relax(l: torch.Tensor, u: torch.Tensor):
    """relu(z) <= su z + tu and relu(z) >= sl z on [l, u]."""
    mixed = (l < 0) & (u > 0)
    su = torch.where(u <= 0, 0.0, torch.where(l >= 0, 1.0, u / (u - l)))
    tu = torch.where(mixed, -l * u / (u - l), torch.zeros_like(l))
    sl = torch.where(u <= 0, 0.0, torch.where(l >= 0, 1.0, (u > -l).to(F64)))
    return su, tu, sl


def relaxed_ranges(Ws, lo, hi):
    """Pre-activation ranges of every layer by back-substitution to the input box."""
    pre = []
    for k, (W, b) in enumerate(Ws):
        bounds = []
        for sign in (1.0, -1.0):
            A, c = sign * W, sign * b
            for j in range(k - 1, -1, -1):
                su, tu, sl = _relax(*pre[j])
                Ap, An = A.clamp(min=0), A.clamp(max=0)
                c = c + Ap @ tu
                A = Ap * su + An * sl
                c = c + A @ Ws[j][1]
                A = A @ Ws[j][0]
            bounds.append(_box(A, c, lo, hi))
        pre.append((-bounds[1], bounds[0]))
    return pre


def ascend(f, x0: torch.Tensor, steps: int = 150) -> float:
    """Signed-gradient ascent of f over [0, 1]^n (a lower bound on the maximum)."""
    x = x0.clone()
    best = -math.inf
    for s in range(steps):
        x.requires_grad_(True)
        v = f(x)
        best = max(best, float(v))
        (g,) = torch.autograd.grad(v, x)
        step = 0.1 if s < steps // 2 else 0.02
        x = (x.detach() + step * g.sign()).clamp(0, 1)
    return max(best, float(f(x)))


def main() -> int:
    torch.manual_seed(0)
    lm = load_model(ROOT / "examples" / "mlp.py")
    net = lm.module.to(F64)
    Ws = _layers(net)
    n_in = Ws[0][0].shape[1]
    lo, hi = torch.zeros(n_in, dtype=F64), torch.ones(n_in, dtype=F64)
    cap = capture(lm)
    ba = analyze_bounds(lm, cap)
    ba0 = analyze_bounds(lm, cap, relational=False)
    boxes0 = [info.primary for info in ba0.nodes.values() if info.op == "addmm"]
    boxes = [info.primary for info in ba.nodes.values() if info.op == "addmm"]
    pre = relaxed_ranges(Ws, lo, hi)
    gen = torch.Generator().manual_seed(0)

    def pre_act(x: torch.Tensor, k: int) -> torch.Tensor:
        h = x
        for j, (W, b) in enumerate(Ws[: k + 1]):
            h = W @ h + b
            if j < k:
                h = torch.relu(h)
        return h

    print("1. pre-activation ranges over [0, 1]^784 (largest |value| over the layer)")
    print(f"{'layer':>6s} {'interval':>10s} {'+ball':>10s} {'relaxed':>10s} {'ascent':>10s} {'+ball/ascent':>13s}")
    for k, (iv0, iv, (l, u)) in enumerate(zip(boxes0, boxes, pre)):
        ib0 = float(torch.maximum(iv0.hi.abs(), iv0.lo.abs()).max())
        ib = float(torch.maximum(iv.hi.abs(), iv.lo.abs()).max())
        rb = float(torch.maximum(u.abs(), l.abs()).max())
        # The neurons with the largest relaxed bounds, both signs, two random starts each.
        top = torch.maximum(u.abs(), l.abs()).argsort(descending=True)[:8].tolist()
        found = max(
            ascend(lambda x, i=i, s=s: s * pre_act(x, k)[i], torch.rand(n_in, dtype=F64, generator=gen))
            for i in top for s in (1.0, -1.0) for _ in range(2)
        )
        print(f"{k + 1:>6d} {ib0:>10.3g} {ib:>10.3g} {rb:>10.3g} {found:>10.3g} {ib / found:>13.1f}")

    print("\n2. sum_k c_k relu(z1_k(x)) with c = column sums of |W3| |W2| (first-layer activations,")
    print("   weighted as the box analysis weights their rounding errors)")
    (W1, b1), (W2, _), (W3, _) = Ws[:3]
    c = (W3.abs() @ W2.abs()).sum(0)
    l1, u1 = pre[0]
    independent = float((c * u1.clamp(min=0)).sum())
    su, tu, _ = _relax(l1, u1)
    coef = (c * su) @ W1
    relaxed = float(coef.clamp(min=0).sum() + (c * su) @ b1 + (c * tu).sum())
    found = max(ascend(lambda x: (c * torch.relu(W1 @ x + b1)).sum(), torch.rand(n_in, dtype=F64, generator=gen)) for _ in range(3))
    z1 = next(info for info in ba.nodes.values() if info.op == "addmm")
    mag = torch.maximum(z1.primary.lo.abs(), z1.primary.hi.abs()).reshape(-1)
    lin = float(_box(c @ W1, c @ b1, lo, hi))
    ball = 0.5 * (float(weighted_abs_sup(c.reshape(1, -1), z1.ball.center, mag, z1.ball.radius)[0]) + lin)
    print(f"   independent {independent:.4g}   relaxed {relaxed:.4g}   ball {ball:.4g}   ascent {found:.4g}")
    print(f"   independent/relaxed {independent / relaxed:.2f}   relaxed/ascent {relaxed / found:.2f}   ball/ascent {ball / found:.2f}")

    print("\n3. fp16: certified bound over the box, at single points, and observed")
    box_only = certified_errors(ba0, [{"*": "fp16"}], keep_nodes=False).bound[0]
    box_bound = certified_errors(ba, [{"*": "fp16"}], keep_nodes=False).bound[0]
    ob = observe(lm, cast_model(lm.module, "fp16"), FORMATS["fp16"].torch_dtype, 100, 5000, seed=0)
    shape = lm.inputs[0].shape

    def point_bound(x: torch.Tensor) -> float:
        pt = analyze_bounds(lm, cap, boxes=[(x, x)])
        return certified_errors(pt, [{"*": "fp16"}], keep_nodes=False).bound[0]

    # Points that make the first-layer activations large (the rounding errors' magnitudes).
    pts = [ob.worst_input[0].to(F64), torch.ones(shape, dtype=F64), torch.full(shape, 0.5, dtype=F64)]
    for j in range(3):
        x = torch.rand(n_in, dtype=F64, generator=gen)
        w = (W3[j].abs() @ W2.abs())
        for _ in range(60):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad((w * torch.relu(W1 @ x + b1)).sum(), x)
            x = (x.detach() + 0.05 * g.sign()).clamp(0, 1)
        pts.append(x.reshape(shape))
    at_points = max(point_bound(p) for p in pts)
    print(f"   box alone {box_only:.3g}   box + ball {box_bound:.3g}   largest point bound found {at_points:.3g}   observed {ob.max_error:.3g}")
    print(f"   box/point {box_bound / at_points:.0f}   point/observed {at_points / ob.max_error:.1f}   box/observed {box_bound / ob.max_error:.0f}")
    cnn_ranges(gen)
    return 0


def cnn_ranges(gen: torch.Generator) -> None:
    import copy

    print("\n4. CNN: largest |value| of each conv / linear output over [0, 1]^784")
    lm = load_model(ROOT / "examples" / "cnn.py")
    ba = analyze_bounds(lm, capture(lm))
    net = copy.deepcopy(lm.module).to(F64).eval()
    mods = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    nodes = [info for info in ba.nodes.values() if info.op in ("convolution", "addmm")]
    shape = lm.inputs[0].shape
    print(f"{'output':>14s} {'ours':>8s} {'ascent':>8s} {'ours/ascent':>12s}")
    for mod, info in zip(mods, nodes):
        feats: dict = {}
        h = mod.register_forward_hook(lambda m, i, o: feats.__setitem__("o", o))
        mag = torch.maximum(info.primary.lo.abs(), info.primary.hi.abs()).reshape(-1)
        top = mag.argsort(descending=True)[:6].tolist()

        def f(x, i, s):
            net(x.reshape(shape))
            return s * feats["o"].reshape(-1)[i]

        found = max(ascend(lambda x, i=i, s=s: f(x, i, s), torch.rand(shape, dtype=F64, generator=gen).reshape(-1)) for i in top for s in (1.0, -1.0) for _ in range(2))
        h.remove()
        print(f"{info.name:>14s} {float(mag.max()):>8.3g} {found:>8.3g} {float(mag.max()) / found:>12.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
