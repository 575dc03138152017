"""Tightness benchmark: certified bound / observed error, per example and format (issue 3).

For each example and each format (fp32, bf16, fp16 run uniformly on CPU, parameters and
float activations cast as with ``model.to(dtype)``; tf32, fp8_e4m3 and fp8_e5m2, which PyTorch
cannot run there, emulated op by op by certifier.emulate), prints the certified uniform bound, the
largest observed max-abs error against float64 over random domain inputs plus an adversarial
search, and their ratio. A row with observed > bound is a soundness bug and is flagged.

``forward`` is the forward pass's bound alone; ``bound`` is the certified one (the smaller of
the forward and the adjoint pass, certifier.adjoint). The ratio is split in two factors: ``at x*`` is the certified bound recomputed with the domain
shrunk to the single worst observed input x* (the same analysis, no worst case over the box),
so ``bound / at x*`` is what the worst case over the domain costs and ``at x* / observed`` is
the analysis's own slack at one input (every summation order, rounding errors of every sign).

``sign`` is a diagnostic of that slack (certifier.adjoint.sign_factor): at x*, the adjoint
pass's elementwise charges (each rounding, cast or cut at its worst sign; ``share`` = their
part of the bound at x*, the rest being l2 charges) summed, over their l2 norm. Errors of
those sizes with independent random signs would add up to about the l2 norm; a bound that
holds for every sign pattern pays the sum. Where ``at x*/obs`` is below ``sign``, the bound
at x* is closer to the observed error than the sign patterns alone would allow for random
signs (the adversarial search found errors more aligned than random). The l2 norm is no
bound.

``--sup N`` adds a search for the largest *pointwise* bound (the same analysis at single
inputs, hill-climbed for N steps from x* and the domain's corners): ``sup~`` is the largest
found, ``relax`` = bound / sup~ what the analysis loses by bounding the whole domain at
once (an upper estimate: sup~ is a lower estimate of the pointwise bound's supremum), and
``sup~/obs`` what a pointwise analysis at the worst input for it would still be above the
largest observed error.

    python benchmarks/tightness.py                      # MLP, CNN, hostile examples
    python benchmarks/tightness.py --models cnn --formats bf16 fp16 --sup 40
    python benchmarks/tightness.py --models bert_base gpt2_small --n 10 --adv 10

The adversarial search (certifier.validate) spends most of a large budget on its grid walk,
one input element moved by one spacing of the format per step, screened 64 at a time where the
model batches (certifier.validate): 50000 steps by default (about 12 s a format on the CNN)
for the native formats, 5000 for the emulated ones.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from certifier.capture import capture  # noqa: E402
from certifier.formats import FORMATS  # noqa: E402
from certifier.loader import load_model  # noqa: E402
from certifier.adjoint import certified_errors, sign_factor  # noqa: E402
from certifier.rounding import run_errors  # noqa: E402
from certifier.emulate import Emulated  # noqa: E402
from certifier.validate import cast_model, observe, runnable  # noqa: E402
from certifier.walker import analyze_bounds  # noqa: E402

DEFAULT = ["mlp", "cnn", "exp_range", "rational_head", "kelvin_head", "naive_softmax"]
TARGET = {"mlp": 100, "cnn": 100, "bert_base": 1000, "gpt2_small": 1000}


def fmt(x: float) -> str:
    return "unbounded" if not math.isfinite(x) else f"{x:.3g}"


def pointwise_sup(lm, cap, f: str, start, steps: int, seed: int = 0) -> float:
    """The largest certified bound at single domain inputs that a hill climb finds."""
    gen = torch.Generator().manual_seed(seed)

    def at(xs) -> float:
        pt = analyze_bounds(lm, cap, boxes=[(x, x) for x in xs])
        return certified_errors(pt, [{"*": f}], keep_nodes=False).bound[0]

    starts = [[x.to(torch.float64) for x in start]]
    for corner in ("lo", "hi"):
        starts.append([torch.full(sp.shape, float(getattr(sp, corner)), dtype=torch.float64) for sp in lm.inputs])
    best_v, best = max(((at(xs), xs) for xs in starts), key=lambda t: t[0])
    for _ in range(steps):
        xs = [x.clone() for x in best]
        for x, sp in zip(xs, lm.inputs):
            mask = torch.rand(x.shape, generator=gen) < 0.1
            new = torch.where(torch.rand(x.shape, generator=gen) < 0.5, sp.lo, sp.hi).to(torch.float64)
            new = torch.where(torch.rand(x.shape, generator=gen) < 0.3, sp.lo + (sp.hi - sp.lo) * torch.rand(x.shape, generator=gen, dtype=torch.float64), new)
            x[mask] = new[mask]
        v = at(xs)
        if v > best_v:
            best_v, best = v, xs
    return best_v


def fmt2(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=DEFAULT)
    ap.add_argument("--formats", nargs="*", default=["fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"])
    ap.add_argument("--n", type=int, default=100, help="random inputs")
    ap.add_argument("--adv", type=int, default=50000, help="adversarial search steps (formats PyTorch runs natively)")
    ap.add_argument("--adv-emulated", type=int, default=5000, help="adversarial search steps for the emulated formats (tf32, fp8)")
    ap.add_argument("--sup", type=int, default=0, help="steps of the search for the largest pointwise bound (0: none)")
    args = ap.parse_args()
    rows = []
    bad = 0
    print(f"{'model':14s} {'format':8s} {'forward':>11s} {'bound':>11s} {'observed':>11s} {'ratio':>9s} {'at x*':>11s} {'domain':>8s} {'at x*/obs':>9s} {'share':>6s} {'sign':>6s} {'target':>7s}  note")
    for name in args.models:
        lm = load_model(ROOT / "examples" / f"{name}.py")
        cap = capture(lm)
        ba = analyze_bounds(lm, cap)
        res = certified_errors(ba, [{"*": f} for f in args.formats], keep_nodes=False)
        fwd = run_errors(ba, [{"*": f} for f in args.formats], keep_nodes=False).bound
        for f, b, ov, bf in zip(args.formats, res.bound, res.overflow, fwd):
            t0 = time.perf_counter()
            if runnable(f):
                ob = observe(lm, cast_model(lm.module, f), FORMATS[f].torch_dtype, args.n, args.adv, seed=0)
            else:
                ob = observe(lm, Emulated(lm.module, {"*": f}), None, args.n, args.adv_emulated, seed=0, align_dtype=FORMATS[f].storage.name)
            ratio = b / ob.max_error if ob.max_error > 0 else math.inf
            at = math.inf
            share = sign = math.nan
            if ob.worst_input is not None:
                pt = analyze_bounds(lm, cap, boxes=[(x, x) for x in ob.worst_input])
                terms: list = []
                at = certified_errors(pt, [{"*": f}], keep_nodes=False, terms=terms).bound[0]
                share, sign = sign_factor(at, terms[0])
            dom = b / at if at > 0 else math.inf
            slack = at / ob.max_error if ob.max_error > 0 else math.inf
            note = ov.reason() if ov else ""
            if ob.max_error > b or ob.max_error > at:
                note = "SOUNDNESS VIOLATION: observed > bound"
                bad += 1
            tgt = TARGET.get(name)
            if tgt and math.isfinite(ratio) and ratio > tgt:
                note = (note + "; " if note else "") + "target missed"
            if args.sup > 0 and math.isfinite(b) and ob.worst_input is not None and all(sp.is_float for sp in lm.inputs):
                sup = pointwise_sup(lm, cap, f, ob.worst_input, args.sup)
                note = (note + "; " if note else "") + f"sup~ {sup:.3g}, relax {b / sup:.3g}, sup~/obs {sup / ob.max_error:.3g}"
            print(f"{name:14s} {f:8s} {fmt(bf):>11s} {fmt(b):>11s} {ob.max_error:>11.3g} {fmt(ratio):>9s} {fmt(at):>11s} {fmt(dom):>8s} {fmt(slack):>9s} {fmt2(share):>6s} {fmt2(sign):>6s} {str(tgt or '-'):>7s}  {note}  ({time.perf_counter() - t0:.1f}s)")
            rows.append((name, f, b, ob.max_error, ratio))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
