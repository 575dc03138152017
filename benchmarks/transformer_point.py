"""BERT-base at a single token sequence: where the rounding-error bound stops being finite
(issue 3's BERT / GPT-2 tightness point; a diagnostic, not a bound over the domain).

Over the full token domain BERT-base has no finite bound (README, Limitations). This script
takes the domain down to one random sequence (a point box, ``analyze_bounds(boxes=[(x, x)])``)
and prints:

* per format, the certified bound at that sequence, the error observed there when the model
  runs in that format, and the first node without a finite bound (an observed error above
  a bound is flagged, and the exit status is 1);
* with ``--trace``, the forward pass's per-node error bound through the first layers next to
  the largest value there (``|y| max``), which shows how fast the bound grows.

``--hinges`` prints, for each input of a layer norm, softmax, GELU or bmm (the adjoint pass's
"hinges"), its forward error bound, the bound of its own adjoint pass (signs kept; the
other hinges not fed back) and the smallest spread (standard deviation) of its rows at the
sequence: a layer norm needs its input's error well under that spread.

``--tokens N`` builds BERT-base with N tokens (the example has 128), ``--layers L`` with L
encoder layers (12). ``--adjoint-budget E``
raises the sign-keeping adjoint pass's budget (certifier.adjoint.MAX_ENTRIES, 2.5e7 by
default; BERT-base's outputs times its largest node are far above it, so only the forward
pass runs). With 4 tokens and ``--adjoint-budget 2e9`` the pass runs (about 5 min, 13 GB);
with 8 tokens it needs more than 24 GB.

    python benchmarks/transformer_point.py                       # 128 tokens, forward pass
    python benchmarks/transformer_point.py --trace --formats bf16,fp32
    python benchmarks/transformer_point.py --tokens 4 --adjoint-budget 2e9
    python benchmarks/transformer_point.py --tokens 4 --layers 1 --adjoint-budget 2e9 --hinges --formats bf16

Needs the ``examples`` extra (transformers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from certifier import adjoint, runtime  # noqa: E402
from certifier.capture import capture  # noqa: E402
from certifier.formats import FORMATS  # noqa: E402
from certifier.loader import load_model  # noqa: E402
from certifier.rounding import run_errors  # noqa: E402
from certifier.validate import ErrorProbe, cast_model  # noqa: E402
from certifier.walker import analyze_bounds  # noqa: E402

TEMPLATE = '''import torch
from transformers import BertConfig, BertModel

def build_model():
    torch.manual_seed(0)
    return BertModel(BertConfig(attn_implementation="eager", num_hidden_layers={layers}), add_pooling_layer=False).eval()

def example_inputs():
    return (torch.zeros(1, {n}, dtype=torch.long),)

def input_domain():
    return [(0, BertConfig().vocab_size - 1)]
'''


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hinges", action="store_true", help="each hinge's forward and adjoint bound against its rows' spread")
    ap.add_argument("--formats", default="fp32,bf16,fp16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--adjoint-budget", type=float, default=None)
    ap.add_argument("--trace", action="store_true", help="per-node forward error bounds through the first layers")
    ap.add_argument("--trace-layers", default="embeddings,encoder.layer.0.")
    a = ap.parse_args(argv)
    runtime.tune_allocator()
    torch.set_num_threads(2)
    fmts = [f.strip() for f in a.formats.split(",") if f.strip()]
    if a.adjoint_budget is not None:
        adjoint.MAX_ENTRIES = a.adjoint_budget
        adjoint.MAX_KEPT = max(adjoint.MAX_KEPT, 4 * a.adjoint_budget)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bert_point.py"
        path.write_text(TEMPLATE.format(n=a.tokens, layers=a.layers))
        lm = load_model(path)
        cap = capture(lm)
    x = torch.randint(int(lm.inputs[0].lo), int(lm.inputs[0].hi) + 1, (1, a.tokens), generator=torch.Generator().manual_seed(a.seed))
    ba = analyze_bounds(lm, cap, boxes=[(x, x)])
    print(f"BERT-base ({a.layers} layers), {a.tokens} tokens, one sequence (seed {a.seed}); adjoint budget {adjoint.MAX_ENTRIES:.3g}")
    t0 = time.perf_counter()
    res = adjoint.certified_errors(ba, [{"*": f} for f in fmts], keep_nodes=False)
    print(f"{'format':8s} {'bound':>10s} {'observed':>10s} {'ratio':>10s}  method / first unbounded node   ({time.perf_counter() - t0:.0f} s)")
    bad = 0
    for f, b, ov, meth in zip(fmts, res.bound, res.overflow, res.method):
        e = ErrorProbe(lm, cast_model(lm.module, f), FORMATS[f].torch_dtype).error((x,))[0]
        why = ov.reason()[:110] if ov is not None and b == float("inf") else ""
        if e > b:
            bad += 1
            why = "SOUNDNESS VIOLATION: observed > bound " + why
        print(f"{f:8s} {b:10.3g} {e:10.3g} {b / e if e > 0 else float('inf'):10.3g}  {meth} {why}")
    if a.trace:
        prefixes = tuple(p for p in a.trace_layers.split(",") if p)
        r = run_errors(ba, [{"*": f} for f in fmts], keep_errs=True)
        print(f"\nforward error bounds ({', '.join(fmts)}) and the largest value, per node")
        for name, info in ba.nodes.items():
            e = r.node_err.get(name)
            iv = info.primary
            if not info.layer.startswith(prefixes) or not isinstance(e, torch.Tensor) or iv is None:
                continue
            mag = float(torch.maximum(iv.lo.abs(), iv.hi.abs()).max())
            errs = " ".join(f"{float(e[i].max()):10.3g}" for i in range(e.shape[0]))
            print(f"{info.layer[:44]:44s} {name[:24]:24s} |y| max {mag:9.3g}  err {errs}")
    if a.hinges:
        _hinges(ba, fmts)
    return 1 if bad else 0


def _hinges(ba, fmts: list[str]) -> None:
    """Each hinge's own adjoint pass, against its forward bound and its rows' spread."""
    hs = adjoint._hinges(ba)
    if not adjoint._fits(ba, 1):
        print("\nhinges: the adjoint pass does not fit the budget (raise --adjoint-budget)")
        return
    for f in fmts:
        a = {"*": f}
        r = run_errors(ba, [a], keep_errs=True, exact_weights=True)
        print(f"\nhinges, {f}: forward bound, adjoint bound (max over elements), smallest row std")
        for n in hs:
            e = r.node_err.get(n)
            e = e[0] if isinstance(e, (tuple, list)) else e
            if e is None:
                continue
            adj = adjoint._Adjoint(ba, a, 0, r.node_err, {}, [n], {}, {})
            t = adj.run()
            info = ba.nodes[n]
            v = (info.primary.lo + info.primary.hi) * 0.5
            spread = float(v.reshape(-1, v.shape[-1]).std(-1).min())
            tb = float(t.max()) if t is not None and t.numel() else float("inf")
            print(f"{info.layer[:40]:40s} {n[:16]:16s} forward {float(e[0].max()):9.3g}  adjoint {tb:9.3g}  row std {spread:8.3g}  cuts {adj.cuts}")


if __name__ == "__main__":
    sys.exit(main())
