"""benchmarks/transformer_point.py, the BERT-base single-sequence diagnostic: it runs, its
rows are there, and it flags no observed error above a bound (heavy: builds BERT-base)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_bert_point_diagnostic_runs_and_reports(capsys):
    spec = importlib.util.spec_from_file_location("transformer_point", ROOT / "benchmarks" / "transformer_point.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    rc = mod.main(["--tokens", "4", "--formats", "fp32,bf16", "--trace"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(r"^(fp32|bf16)\s+(\S+)\s+(\S+)\s", out, re.M)}
    assert set(rows) == {"fp32", "bf16"}, out
    for f, (bound, observed) in rows.items():
        assert observed > 0 and observed <= bound, (f, bound, observed)
    # the trace: finite forward bounds on the first nodes, each next to its value range
    trace = [ln for ln in out.splitlines() if "|y| max" in ln]
    assert len(trace) > 20 and trace[0].startswith("embeddings")
