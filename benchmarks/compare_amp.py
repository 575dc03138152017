"""Side-by-side comparison of precision policies (issue 5), generating the README table.

For each model, on the same random domain inputs, reports the observed max-abs error
against float64 and the share of FLOPs run below fp32 for: all-fp32, all-bf16, all-fp16,
``torch.autocast(bfloat16)`` and the certified assignment at the given eps (with its
certified bound), chosen among the formats of hardware profile nvidia-a100 (fp64, fp32,
tf32, bf16, fp16: what PyTorch runs, so the assignment is applied and observed). For BERT-base an extra row uses eps = 10x the observed error of bf16
autocast, as the issue asks.

    python benchmarks/compare_amp.py                              # MLP and CNN
    python benchmarks/compare_amp.py --models mlp cnn bert_base gpt2_small --write-readme
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from certifier.amp import apply_precision  # noqa: E402
from certifier.capture import ROOT_LAYER  # noqa: E402
from certifier.pipeline import Options, run_certify  # noqa: E402
from certifier.validate import abs_error, cast_model, cast_inputs, flat_outputs  # noqa: E402

EPS = {"mlp": 1.0, "cnn": 0.5, "bert_base": 1e-1, "gpt2_small": 1e-1, "resnet50": 1.0}
MATMUL_OPS = {"mm", "addmm", "bmm", "convolution", "baddbmm"}
LOW = {"bf16", "fp16", "tf32", "fp8_e4m3", "fp8_e5m2"}
#: The certified assignment is chosen among the formats PyTorch runs (hardware profile
#: nvidia-a100), so that apply_precision can run it on the same inputs.
RUNNABLE = ("fp64", "fp32", "tf32", "bf16", "fp16")


def max_err(ref, model, inputs, dtype=None, autocast=False) -> float:
    worst = 0.0
    for xs in inputs:
        with torch.no_grad():
            r = flat_outputs(ref(*xs))
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    o = flat_outputs(model(*cast_inputs(xs, torch.float32)))
            else:
                o = flat_outputs(model(*cast_inputs(xs, dtype)))
        for a, b in zip(r, o):
            d = abs_error(b, a)
            worst = max(worst, float(d.max()) if d.numel() else 0.0)
    return worst


def flop_shares(rep) -> tuple[float, float, dict[str, float]]:
    ba = rep.bounds
    total = sum(L.flops for L in ba.layers.values()) or 1.0
    mm = 0.0
    for info in ba.nodes.values():
        if info.op in MATMUL_OPS and info.result is not None:
            mm += info.result.flops
    per = {name: L.flops for name, L in ba.layers.items()}
    return total, mm / total, per


def assignment_share(rep, per, total) -> float | None:
    fm = rep.assignment.formats
    if not fm:
        return None
    return sum(per.get(L, 0.0) for L, f in fm.items() if f in LOW) / total


def fnum(x) -> str:
    if x == "none":
        return "none (no guarantee)"
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "unbounded"
    return f"{x:.2g}"


def rows_for(name: str, n: int, extra_eps: bool) -> list[str]:
    path = ROOT / "examples" / f"{name}.py"
    eps = EPS.get(name, 1e-2)
    rep = run_certify(path, Options(eps=eps, formats=RUNNABLE))
    lm = rep.loaded
    gen = torch.Generator().manual_seed(0)
    inputs = lm.sample_inputs(n, gen)
    ref = cast_model(lm.module, "fp64")
    total, mm_share, per = flop_shares(rep)
    cert = rep.certificate
    out = []

    def row(policy, err, share, bound, e=eps):
        out.append(f"| {name} | {e:g} | {policy} | {fnum(err)} | {fnum(bound)} | {'-' if share is None else f'{100 * share:.0f}%'} |")

    row("all-fp32", max_err(ref, cast_model(lm.module, "fp32"), inputs, torch.float32), 0.0, cert["uniform"]["fp32"]["bound"])
    row("all-bf16", max_err(ref, cast_model(lm.module, "bf16"), inputs, torch.bfloat16), 1.0, cert["uniform"]["bf16"]["bound"])
    row("all-fp16", max_err(ref, cast_model(lm.module, "fp16"), inputs, torch.float16), 1.0, cert["uniform"]["fp16"]["bound"])
    ac = max_err(ref, cast_model(lm.module, "fp32"), inputs, autocast=True)
    row("autocast(bf16)", ac, mm_share, "none")

    def certified_row(r, e):
        a = r.assignment
        if a.certified:
            cfg = {("" if k == ROOT_LAYER else k): v for k, v in a.formats.items()}
            err = max_err(ref, apply_precision(lm.module, cfg), inputs, None)
            row("certified", err, assignment_share(r, per, total), a.bound, e)
        else:
            row("certified (none: " + r.certificate["verdict"] + ")", None, None, a.bound, e)

    certified_row(rep, eps)
    if extra_eps and ac > 0:
        e2 = float(f"{10 * ac:.2g}")
        certified_row(run_certify(path, Options(eps=e2, formats=RUNNABLE)), e2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["mlp", "cnn"])
    ap.add_argument("--n", type=int, default=20, help="random inputs (the same for every policy)")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    lines = [
        "| model | eps | policy | observed max error | certified bound | FLOPs below fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.models:
        lines += rows_for(name, args.n, extra_eps=(name == "bert_base"))
    table = "\n".join(lines)
    print(table)
    if args.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        block = f"<!-- amp-table:start (generated by benchmarks/compare_amp.py --write-readme) -->\n{table}\n<!-- amp-table:end -->"
        new, k = re.subn(r"<!-- amp-table:start.*?<!-- amp-table:end -->", block, text, flags=re.S)
        if k == 0:
            raise SystemExit("README.md has no amp-table markers")
        readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
