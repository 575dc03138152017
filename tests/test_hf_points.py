"""Real architectures at single inputs: the certified bound holds where the model actually runs.

Tiny random-config Hugging Face models (the builders of benchmarks/hf_points.py), each
certified at two random token sequences (a point domain) and run there in fp32, bf16 and
fp16. Every observed error must be within its bound; and the bounds the analysis does reach
(pinned below) must stay finite, so the check cannot pass by everything being unbounded."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from certifier.adjoint import certified_errors  # noqa: E402
from certifier.capture import capture  # noqa: E402
from certifier.formats import FORMATS  # noqa: E402
from certifier.loader import load_model  # noqa: E402
from certifier.validate import ErrorProbe, cast_model  # noqa: E402
from certifier.walker import analyze_bounds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hf_points", ROOT / "benchmarks" / "hf_points.py")
hf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf)  # type: ignore[union-attr]

FMTS = ["fp32", "bf16", "fp16"]
#: formats whose point bound is finite today (benchmarks/hf_points.py); a regression that
#: makes one unbounded fails here rather than silently emptying the check.
FINITE = {"bert": {"fp32", "fp16"}, "bloom": {"fp32", "fp16"}, "llama": {"fp32"}, "gpt2": {"fp32"}}


@pytest.mark.parametrize("arch", sorted(FINITE))
def test_point_bounds_hold_on_real_architectures(arch, tmp_path):
    cfg, cls, kw = hf.ARCHS[arch]
    path = tmp_path / f"hf_{arch}.py"
    path.write_text(hf.TEMPLATE.format(kw=kw, vocab=hf.VOCAB, cfg=cfg, cls=cls, seq=hf.SEQ))
    lm = load_model(path)
    cap = capture(lm)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        x = torch.randint(0, hf.VOCAB, (1, hf.SEQ), generator=gen)
        res = certified_errors(analyze_bounds(lm, cap, boxes=[(x, x)]), [{"*": f} for f in FMTS], keep_nodes=False)
        for f, b in zip(FMTS, res.bound):
            e = ErrorProbe(lm, cast_model(lm.module, f), FORMATS[f].torch_dtype).error((x,))[0]
            assert e <= b, f"{arch} {f}: observed {e:.3g} > certified {b:.3g}"
            if f in FINITE[arch]:
                assert math.isfinite(b), f"{arch} {f}: the point bound became unbounded"
                assert e > 0  # the run does err, so the comparison is not vacuous
