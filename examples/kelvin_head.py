"""A regression head whose output must be held in fp16: a temperature in kelvin.

A small MLP (4 sensor readings in [0, 1] -> 16 -> 1) plus a fixed offset of 300 K, so the
output lives in [256, 512), where consecutive fp16 values are 0.25 apart. With eps below
half that spacing (for example eps = 0.1 < 0.125), an fp16-only accelerator cannot deliver
the output within eps: `certify prove examples/kelvin_head.py --hardware fp16-only --eps 0.1`
is impossible with an output-representability witness (an input whose exact output lies
midway between two fp16 values). On nvidia-t4 (fp32 and fp16) the same eps is certified.
"""

import torch
from torch import nn


class KelvinHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.register_buffer("offset", torch.tensor(300.0))

    def forward(self, x):
        return self.body(x) * 4.0 + self.offset


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return KelvinHead()


def example_inputs():
    return (torch.rand(1, 4),)


def input_domain():
    return [(0.0, 1.0)]
