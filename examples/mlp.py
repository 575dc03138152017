"""An MNIST-size MLP: 784 -> 256 -> 256 -> 10 with ReLU, inputs (pixels) in [0, 1].

Weights are random (seeded) with PyTorch's default initialisation; pass ``--weights`` to
certify trained ones.
"""

import torch
from torch import nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def example_inputs():
    return (torch.rand(1, 1, 28, 28),)


def input_domain():
    return [(0.0, 1.0)]
