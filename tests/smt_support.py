"""Shared, cached runs for the smt tests (each analysis runs once per session)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_TMP = Path(tempfile.mkdtemp(prefix="certify-smt-tests-"))


@functools.lru_cache(maxsize=None)
def proved(example: str, hardware: str, eps: float, kinds: tuple[str, ...] | None = None):
    """run_prove on an example, with its proofs written to a temporary directory:
    (ProveReport, certificate dict with proofs attached, proof directory)."""
    from smt.prove import ProveOptions, attach_proofs, run_prove
    from smt.witness import KINDS

    path = EXAMPLES / example if not Path(example).is_absolute() else Path(example)
    rep = run_prove(path, ProveOptions(eps=eps, hardware=hardware, witness_kinds=kinds or KINDS, witness_seconds=60))
    d = _TMP / f"{Path(example).stem}-{hardware}-{eps:g}-{len(kinds or ())}"
    attach_proofs(rep.certificate, rep.queries, None, d, Path(example).stem)
    return rep, rep.certificate, d


def model_file(name: str, source: str) -> Path:
    p = _TMP / name
    p.write_text(source)
    return p


SCALE_MODEL = '''
import torch
from torch import nn


class Scale(nn.Module):
    def forward(self, x):
        return 1000.0 * x


def build_model():
    return Scale()


def example_inputs():
    return (torch.ones(1, 4),)


def input_domain():
    return [(1.0, 2.0)]
'''
