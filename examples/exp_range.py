"""A numerically hostile model: y = exp(x) elementwise on x in [0, 12].

exp(12) = 1.6e5 exceeds fp16's largest finite value (65504): fp16 must be refused by range,
bf16 (max 3.4e38) allowed. Used by the refusal tests and by `certify prove` (an fp16-only
accelerator cannot reach any eps: overflow witness).
"""

import torch
from torch import nn


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


def build_model() -> nn.Module:
    return Exp()


def example_inputs():
    return (torch.zeros(1, 8),)


def input_domain():
    return [(0.0, 12.0)]
