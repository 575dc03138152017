"""A numerically hostile model: naive softmax exp(z) / sum(exp(z)) on logits in [-20, 20].

Without the max subtraction of a real softmax kernel, exp(20) = 4.9e8 must be held: fp16
(max 65504) is refused by range; bf16 and fp32 are not.
"""

import torch
from torch import nn


class NaiveSoftmax(nn.Module):
    def forward(self, z):
        e = torch.exp(z)
        return e / e.sum(dim=-1, keepdim=True)


def build_model() -> nn.Module:
    return NaiveSoftmax()


def example_inputs():
    return (torch.zeros(1, 16),)


def input_domain():
    return [(-20.0, 20.0)]
