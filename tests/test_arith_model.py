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


def _moment_rows(g: torch.Generator, n: int, kind: int) -> torch.Tensor:
    """Rows that stress a running mean / variance: near-constant with a large mean, one huge
    element first or last among tiny ones, magnitudes spread over 8 decades."""
    if kind == 0:
        return 1000 + 1e-3 * torch.randn(4, n, generator=g, dtype=torch.float64)
    if kind == 3:
        x = 1e-3 * torch.randn(4, n, generator=g, dtype=torch.float64)
        x[:, -1] = -1e4
        return x
    if kind == 1:
        x = 1e-3 * torch.randn(4, n, generator=g, dtype=torch.float64)
        x[:, 0] = 1e4
        return x
    mags = torch.logspace(-4, 4, n, dtype=torch.float64)[torch.randperm(n, generator=g)]
    return torch.randn(4, n, generator=g, dtype=torch.float64) * mags


def test_normalization_moments_within_the_variance_model():
    """LayerNorm / GroupNorm / batch-statistics BatchNorm (curvature_rules.norm) charge the
    kernel's mean with (gamma_n + u) mean|x| and its (population) variance with
    4 gamma_{n+2} mean(x^2), in the accumulation format. PyTorch's CPU kernels compute both
    by chunked Welford updates (RowwiseMoments) or two passes; a worst-case analysis of a
    sequential Welford mean gives about (n + 6 H_n) u max|x|, so the charge rests on these
    measurements: the kernels' mean and rstd outputs read back, on rows that stress a running
    mean. (Measured: at most 0.17 of the mean's charge, 1e-4 of the variance's.)"""
    aten = torch.ops.aten
    u, eps = 2.0**-24, 1e-5

    def gam(k):
        return k * u / (1 - k * u)

    g = torch.Generator().manual_seed(4)
    worst_mu = worst_var = 0.0
    for trial in range(160):
        n = int(torch.randint(2, 3000, (1,), generator=g))
        xd = _moment_rows(g, n, trial % 4).float().double()
        xf = xd.float()
        m, v = xd.mean(-1), ((xd - xd.mean(-1, keepdim=True)) ** 2).mean(-1)
        outs = [
            aten.native_layer_norm(xf, [n], None, None, eps)[1:],
            aten.native_group_norm(xf.reshape(4, 1, n), None, None, 4, 1, n, 1, eps)[1:],
            aten._native_batch_norm_legit(xf.reshape(1, 4, n), None, None, True, 0.1, eps)[1:],
        ]
        for mu, rstd in outs:
            mu, rstd = mu.double().reshape(4), rstd.double().reshape(4)
            var_hat = 1 / rstd**2 - eps
            worst_mu = max(worst_mu, float(((mu - m).abs() / ((gam(n) + u) * xd.abs().mean(-1))).max()))
            # var_hat is read back through the kernel's rsqrt (a few ulps of var + eps)
            slack = 8 * u * (v + eps)
            worst_var = max(worst_var, float((((var_hat - v).abs() - slack) / (4 * gam(n + 2) * (xd * xd).mean(-1))).max()))
    assert worst_mu <= 1.0 and worst_var <= 1.0, (worst_mu, worst_var)


def test_var_mean_kernel_within_its_model():
    """torch.var_mean (curvature_rules.norm.VarError): the same charges, plus the final
    rounding to float32 (the CPU kernel accumulates float32 in double: 4.5e-8 relative
    measured on rows near 1000)."""
    u = 2.0**-24
    g = torch.Generator().manual_seed(5)
    for trial in range(80):
        n = int(torch.randint(2, 3000, (1,), generator=g))
        xd = _moment_rows(g, n, trial % 4).float().double()
        v_hat, m_hat = torch.var_mean(xd.float(), -1, correction=0)
        m, v = xd.mean(-1), ((xd - xd.mean(-1, keepdim=True)) ** 2).mean(-1)
        g_n, g_n2 = n * u / (1 - n * u), (n + 2) * u / (1 - (n + 2) * u)
        assert bool(((m_hat.double() - m).abs() <= (g_n + u) * xd.abs().mean(-1) + u * m.abs()).all())
        assert bool(((v_hat.double() - v).abs() <= 4 * g_n2 * (xd * xd).mean(-1) + 2 * u * v).all())


@pytest.mark.parametrize("dt,u,n", [(torch.float16, 2.0**-11, 512), (torch.bfloat16, 2.0**-8, 64)])
def test_products_cumprod_in_fp32_prod_in_the_storage_format(dt, u, n):
    """curvature_rules.reduction.ProductError: cumprod keeps its running product in float32
    (error within the store's u plus gamma_{k-1} of float32), while prod multiplies in the
    storage format: its error exceeds any float32-accumulation model (so that model would be
    unsound for prod) and stays within gamma_{n-1}(u + u_acc) plus the store."""
    g = torch.Generator().manual_seed(7)
    u32 = 2.0**-24
    x = (1 + 0.01 * torch.rand(4, n, generator=g, dtype=torch.float64)).to(dt)
    xd = x.double()
    c, ce = x.cumprod(-1).double(), xd.cumprod(-1)
    k = torch.arange(1, n + 1, dtype=torch.float64)
    gk = (k - 1) * u32 / (1 - (k - 1) * u32)
    assert bool(((c - ce).abs() <= (u + gk * (1 + u)) * ce.abs()).all())
    p, pe = x.prod(-1).double(), xd.prod(-1)
    g32 = (n - 1) * u32 / (1 - (n - 1) * u32)
    assert bool(((p - pe).abs() > (u + g32 * (1 + u)) * pe.abs()).any())  # not float32 accumulation
    v = u + u32 * (1 + u)
    gv = (n - 1) * v / (1 - (n - 1) * v)
    assert bool(((p - pe).abs() <= (u + gv * (1 + u)) * pe.abs()).all())
