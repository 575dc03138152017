"""A small CNN for 28x28 images: conv-bn-relu-pool twice, then a linear head.

Inputs (pixels) in [0, 1]; random seeded weights, eval-mode BatchNorm with non-trivial
running statistics so the normalisation is not the identity.
"""

import torch
from torch import nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m


def example_inputs():
    return (torch.rand(1, 1, 28, 28),)


def input_domain():
    return [(0.0, 1.0)]
