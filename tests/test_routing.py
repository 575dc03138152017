"""End to end, against real fp32 / bf16 / fp16 runs: a top-2 mixture-of-experts block
(Mixtral-style routing: router logits, topk, softmax over the chosen two, experts gathered
by the computed indices). Where two router logits tie within their rounding errors the
computed routing picks another expert than the exact one, and the output jumps by the
difference of two experts' outputs: the bound must cover that jump (the gathered value may
be any element of its hull), not only the smooth rounding errors. The test builds such a
tie and checks that the jump happens and stays within the certified bound."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from certifier.adjoint import certified_errors
from certifier.formats import FORMATS
from certifier.validate import cast_model, observe
from certifier.walker import analyze_bounds
from tests.rules.harness import box, build

FMTS = ["fp32", "bf16", "fp16"]
E, D = 4, 8


class MoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.router = nn.Linear(D, E)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D)) for _ in range(E)])

    def forward(self, x):
        vals, idx = self.router(x).topk(2, dim=-1)
        w = vals.softmax(-1)
        outs = torch.stack([e(x) for e in self.experts], 1)
        g = outs.gather(1, idx.unsqueeze(-1).expand(-1, -1, D))
        return x + (w.unsqueeze(-1) * g).sum(1)


@pytest.fixture(scope="module")
def moe():
    m = MoE().eval()
    _, cap, loaded = build(m, [box((2, D), -1.0, 1.0)], None, True)
    ba = analyze_bounds(loaded, cap)
    assert not ba.unsupported, ba.unsupported
    res = certified_errors(ba, [{"*": f} for f in FMTS], keep_nodes=False)
    return m, loaded, dict(zip(FMTS, res.bound))


def _tie(m: nn.Module) -> torch.Tensor:
    """A domain input whose 2nd and 3rd router logits are equal (Newton steps on the gap)."""
    ref = copy.deepcopy(m).double()
    x = torch.rand(2, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for _ in range(100):
        x.requires_grad_(True)
        s = ref.router(x).sort(-1, descending=True).values
        gap = (s[:, 1] - s[:, 2]).sum()
        (g,) = torch.autograd.grad(gap, x)
        with torch.no_grad():
            x = (x - gap / (g.norm() ** 2 + 1e-300) * g).clamp(-1, 1)
    return x.detach()


@pytest.mark.parametrize("fmt", FMTS)
def test_moe_bound_holds_at_a_routing_tie(moe, fmt):
    """Scan a segment through a tie of the router logits (a hundred units of roundoff
    wide, in steps of u / 10): the computed routing differs from the exact one somewhere on it, the output
    jumps there (by more than 20 times the format's unit roundoff), and the error stays
    within the certified bound, as it does on random inputs and under the adversarial
    search."""
    m, loaded, bounds = moe
    assert math.isfinite(bounds[fmt]), bounds
    ref = copy.deepcopy(m).double()
    low = cast_model(m, fmt)
    dt = FORMATS[fmt].torch_dtype
    u = 2.0 ** -FORMATS[fmt].p
    x0 = _tie(m)
    d = torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    flips, worst = 0, 0.0
    with torch.no_grad():
        for t in torch.linspace(-50 * u, 50 * u, 1001, dtype=torch.float64):
            x = (x0 + t * d).clamp(-1, 1).to(dt)
            xe = x.double()
            i_low = low.router(x).topk(2, dim=-1).indices
            i_ref = ref.router(xe).topk(2, dim=-1).indices
            err = float((low(x).double() - ref(xe)).abs().max())
            if not torch.equal(i_low, i_ref):
                flips += 1
                worst = max(worst, err)
            assert err <= bounds[fmt], (fmt, float(t), err, bounds[fmt])
    assert flips > 0, fmt
    assert worst > 20 * u, (fmt, worst)
    ob = observe(loaded, low, dt, 20, 100, seed=5)
    assert ob.max_error <= bounds[fmt], (fmt, ob.max_error, bounds[fmt])
