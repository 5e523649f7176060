"""The fast paths of the registration engine keep the semantics of what they replace."""
import numpy as np
import torch
import torch.nn.functional as F

from tttmedical.core.adam import Adam
from tttmedical.core.losses import box_sum


def test_plain_adam_matches_torch_adam_step_for_step():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 4)
    a = torch.zeros(2, 3, 4, requires_grad=True)
    b = torch.zeros(2, 3, 4, requires_grad=True)
    ours, ref = Adam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    for step in range(20):
        for p, opt in ((a, ours), (b, ref)):
            opt.zero_grad(set_to_none=True)
            ((p - target) ** 4).sum().backward()
            opt.step()
        if step == 10:  # the test-time loop decays the learning rate through param_groups
            for opt in (ours, ref):
                opt.param_groups[0]["lr"] *= 0.5
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float((a.detach() - target).abs().mean()) < float(target.abs().mean())  # it did move towards the target


def _cumsum_box_sum(x, window):
    """The integral-image box sum the engine used before (zero padding)."""
    r = window // 2
    for dim in (2, 3, 4):
        pad = [0] * 6
        pad[2 * (4 - dim)], pad[2 * (4 - dim) + 1] = r + 1, r
        c = F.pad(x, pad).cumsum(dim)
        n = x.shape[dim]
        x = c.narrow(dim, window, n) - c.narrow(dim, 0, n)
    return x


def test_box_sum_equals_the_integral_image_sum_and_its_own_adjoint():
    x = torch.rand(1, 2, 11, 7, 9, dtype=torch.float64)
    for window in (3, 5, 7, 9, 13):
        np.testing.assert_allclose(box_sum(x, window).numpy(), _cumsum_box_sum(x, window).numpy(), rtol=1e-12, atol=1e-12)
    # the backward is the same box sum (self-adjoint): <B x, y> == <x, B y>
    y = torch.rand_like(x)
    xr = x.clone().requires_grad_(True)
    (box_sum(xr, 9) * y).sum().backward()
    np.testing.assert_allclose(xr.grad.numpy(), box_sum(y, 9).numpy(), rtol=1e-12)


def test_thread_policy_leaves_busy_cores_alone(monkeypatch):
    from tttmedical.core import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "physical_cores", lambda: 4)
    for busy, expected in ((0.0, 4), (3.0, 4), (5.2, 3), (6.6, 1), (8.0, 1), (None, 4)):
        monkeypatch.setattr(threads, "busy_cores", lambda interval=0.05, b=busy: b)
        assert threads.auto_threads() == expected, (busy, expected)


def test_busy_cores_reads_the_machine():
    from tttmedical.core import threads

    busy = threads.busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= threads.os.cpu_count() + 1e-6
    assert 1 <= threads.physical_cores() <= threads.usable_cores()


def test_matrix_upsampling_and_fused_warp_equal_interpolate_and_warp():
    from tttmedical.core.warp import identity_grid, resize_field, warp
    from tttmedical.registration.regttr import upsample_linear, warp_upsampled

    torch.manual_seed(0)
    for src, dst in (((5, 7, 6), (9, 13, 11)), ((4, 4, 4), (4, 4, 4)), ((1, 3, 2), (3, 5, 4))):
        x = torch.randn(2, 3, *src)
        expected = F.interpolate(x, size=dst, mode="trilinear", align_corners=True)
        torch.testing.assert_close(upsample_linear(x, dst), expected, rtol=0, atol=1e-5)
    image = torch.rand(1, 1, 10, 12, 9)
    u = (torch.randn(1, 3, 5, 6, 5) * 0.8).requires_grad_(True)
    v = u.detach().clone().requires_grad_(True)
    base = identity_grid((10, 12, 9))
    fused, plain = warp_upsampled(image, u, base), warp(image, resize_field(v, (10, 12, 9)), base=base)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)
    (fused * image).sum().backward()
    (plain * image).sum().backward()
    torch.testing.assert_close(u.grad, v.grad, rtol=1e-4, atol=1e-5)
    assert float((fused.detach() - image).abs().mean()) > 0.01  # the field does move the image
