"""Soundness margin: how close the observed error gets to the certified bound on random networks.

Builds the random networks of the fuzz tests (tests/test_fuzz_soundness.py: MLPs and CNNs with
relu, tanh, sigmoid, GELU or hardtanh, batch norm, pooling, random input boxes, pre-activations
placed on the relu kinks), certifies each one's uniform bound over its input box in fp32, bf16,
fp16 (PyTorch's kernels) and fp8_e4m3 / fp8_e5m2 (emulated), and runs the adversarial search
of certifier.validate against it (random inputs, then mostly the grid walk). Prints, per
format, the number of cases with a finite bound, the largest observed / bound (and its seed),
the median, and the violations (observed > bound: a soundness bug; the exit status is then 1).

    python benchmarks/soundness_margin.py                      # seeds 0-199, 800 / 150 steps
    python benchmarks/soundness_margin.py --seeds 200 400 --adv 2000
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

from certifier.adjoint import certified_errors  # noqa: E402
from certifier.capture import capture  # noqa: E402
from certifier.emulate import Emulated  # noqa: E402
from certifier.formats import FORMATS  # noqa: E402
from certifier.validate import cast_model, observe  # noqa: E402
from certifier.walker import analyze_bounds  # noqa: E402
from test_fuzz_soundness import build_case  # noqa: E402

FMTS = ["fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs=2, type=int, default=[0, 200], metavar=("FIRST", "END"))
    ap.add_argument("--n", type=int, default=10, help="random inputs per case")
    ap.add_argument("--adv", type=int, default=800, help="adversarial steps, formats PyTorch runs")
    ap.add_argument("--adv-emulated", type=int, default=150, help="adversarial steps, emulated formats")
    args = ap.parse_args()
    ratios: dict[str, list[tuple[float, int]]] = {f: [] for f in FMTS}
    bad: list[str] = []
    t0 = time.perf_counter()
    for seed in range(*args.seeds):
        _, _, model, lm, _ = build_case(seed)
        ba = analyze_bounds(lm, capture(lm))
        res = certified_errors(ba, [{"*": f} for f in FMTS], keep_nodes=False)
        for f, b in zip(FMTS, res.bound):
            if not math.isfinite(b):
                continue
            if f.startswith("fp8"):
                ob = observe(lm, Emulated(model, {"*": f}), None, args.n, args.adv_emulated, seed=seed, align_dtype=FORMATS[f].storage.name)
            else:
                ob = observe(lm, cast_model(model, f), FORMATS[f].torch_dtype, args.n, args.adv, seed=seed)
            ratios[f].append((ob.max_error / b if b > 0 else math.inf, seed))
            if ob.max_error > b:
                bad.append(f"seed {seed} {f}: observed {ob.max_error:.3g} > bound {b:.3g}")
    print(f"seeds {args.seeds[0]}-{args.seeds[1] - 1}, {args.n} random inputs + {args.adv} adversarial steps ({args.adv_emulated} emulated), {time.perf_counter() - t0:.0f} s")
    print(f"{'format':9s} {'cases':>6s} {'max obs/bound':>14s} {'seed':>5s} {'median':>8s} {'violations':>10s}")
    for f in FMTS:
        r = ratios[f]
        if not r:
            continue
        top = max(r)
        nbad = sum(1 for v, _ in r if v > 1)
        print(f"{f:9s} {len(r):>6d} {top[0]:>14.3f} {top[1]:>5d} {statistics.median(v for v, _ in r):>8.3f} {nbad:>10d}")
    for line in bad:
        print("SOUNDNESS VIOLATION:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
