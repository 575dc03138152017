"""Heavy variants of the rule soundness checks: many more points, directions and rounding
samples on the cases most likely to expose a wrong bound (run with ``pytest -m heavy``)."""

from __future__ import annotations

import pytest
import torch

from tests.rules import test_arithmetic as ar
from tests.rules import test_elementwise as el
from tests.rules import test_norm as nm
from tests.rules import test_softmax as sm
from tests.rules.harness import box

pytestmark = pytest.mark.heavy
HEAVY = dict(n=96, n_dirs=8, n_round=48, seed="heavy")


@pytest.mark.parametrize("c", el.CASES, ids=[c[0] for c in el.CASES])
def test_elementwise_heavy(c):
    ref = {torch.ops.aten.gelu.default: el._gelu_ref} if c[0].startswith("gelu") else None
    for lo, hi in c[3]:
        el.REGISTERED[c[0]].check([box(el.S, lo, hi)], c[2], critical=c[4], smooth=c[5], reference=ref, **HEAVY)


@pytest.mark.parametrize("c", ar.BINARY, ids=[c[0] for c in ar.BINARY])
def test_binary_heavy(c):
    smooth = c[2] not in (torch.ops.aten.maximum.default, torch.ops.aten.minimum.default)
    for bx, by in c[3]:
        ar.BIN_CASES[c[0]].check([box(ar.S, *bx), box(ar.S, *by)], c[2], smooth=smooth, critical={"self": [0.0], "other": [0.0]}, **HEAVY)


@pytest.mark.parametrize("c", sm.CASES, ids=[c[0] for c in sm.CASES])
def test_softmax_heavy(c):
    for lo, hi in sm.BOXES:
        sm.REG[c[0]].check([box(c[3], lo, hi)], c[2], critical=[0.0], **HEAVY)


@pytest.mark.parametrize("c", nm.LAYERS, ids=[c[0] for c in nm.LAYERS])
def test_layer_norm_heavy(c):
    for lo, hi in nm.LN_BOXES:
        nm.LN_CASES[c[0]].check([box(c[2], lo, hi)], nm.LN, reference=nm.REF, critical=[(lo + hi) / 2], **HEAVY)
