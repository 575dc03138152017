"""The arithmetic model's assumptions about PyTorch's CPU kernels, checked empirically.

If a kernel rounded more often than the model assumes, these fail (the bounds would then be
unsound for that kernel)."""

import pytest
import torch


@pytest.mark.parametrize("dt,u", [(torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)])
def test_addmm_rounds_once_after_fp32_accumulation(dt, u):
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        k = int(torch.randint(1, 700, (1,), generator=g))
        x = (torch.randn(8, k, generator=g) * 3).to(dt)
        W = torch.randn(k, 16, generator=g).to(dt)
        b = (torch.randn(16, generator=g) * 50).to(dt)
        got = torch.addmm(b, x, W).double()
        exact = b.double() + x.double() @ W.double()
        S = b.double().abs() + x.double().abs() @ W.double().abs()
        gk = (k + 1) * 2.0**-24 / (1 - (k + 1) * 2.0**-24)
        bound = u * exact.abs() + gk * S * (1 + u) + 2.0**-24
        assert bool(((got - exact).abs() <= bound).all())


@pytest.mark.parametrize("dt,u", [(torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)])
def test_sum_accumulates_in_fp32(dt, u):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 4096, generator=g).to(dt)
    got = x.sum(-1).double()
    exact = x.double().sum(-1)
    n = 4096
    bound = u * exact.abs() + n * 2.0**-24 / (1 - n * 2.0**-24) * x.double().abs().sum(-1)
    assert bool(((got - exact).abs() <= bound).all())
    # fp16 accumulation would be far off for 4096 values in [0, 1):
    naive = torch.zeros(4, dtype=dt)
    for j in range(0, n, 512):
        naive = naive + x[:, j : j + 512].sum(-1)
    assert ((got - exact).abs() <= u * exact.abs() * 2).all()
