"""A rational-head model: a small MLP whose head returns a projective pair (N, D).

The pair is meant to be decoded strictly, N/D, in the style of ZeroProofML's Signed-Common-
Meadow inference: ``|D| < tau_infer`` gives bottom, ``tau_infer <= |D| < tau_train`` the gap,
otherwise N/D. ``certify examples/rational_head.py --eps 0.05`` derives both thresholds per
format (see "SCM thresholds" in README.md).

Body: 2 -> 4 with tanh; heads N and D are single linear units. The weights are random
(seeded, PyTorch's default initialisation, first layer doubled), the numerator head is scaled
down (|N| <= 0.21 over the box) and the denominator head up and shifted so that D changes
sign inside the input box [-1, 1]^2 (D ranges over about [-4.2, 4.2]): every region of the
strict decoding (bottom, gap, decoded) is reached in bf16, fp16 and fp32.

``rational_head()`` is the model-file hook that declares the rational head: it returns the
indices (numerator, denominator) into the model's flattened tensor outputs. ``--rational N,D``
on the command line does the same for a model file without the hook.
"""

import torch
from torch import nn

HIDDEN = 4


class RationalHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, HIDDEN), nn.Tanh())
        self.num = nn.Linear(HIDDEN, 1)
        self.den = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.num(h), self.den(h)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    m = RationalHead()
    with torch.no_grad():
        m.body[0].weight *= 2.0
        m.num.weight *= 0.2
        m.num.bias *= 0.2
        m.den.weight *= 6.0
        # Centre D's range on 0 over the box so that the pole set {D = 0} crosses it.
        xs = torch.rand(4096, 2) * 2 - 1
        d = m.den(m.body(xs))
        m.den.bias -= 0.5 * (d.max() + d.min())
    return m


def example_inputs():
    return (torch.zeros(1, 2),)


def input_domain():
    return [(-1.0, 1.0)]


def rational_head():
    """(numerator, denominator) output indices: this model returns (N, D)."""
    return (0, 1)
