"""UNet3D: any spatial size, near-identity at initialisation, gradients, float32 output."""
import torch

from tttmedical.registration.networks import UNet3D, autocast_context


def test_odd_shapes_preserved_and_float32():
    torch.manual_seed(0)
    net = UNet3D(features=(4, 8, 8), final_features=(4,))
    for shape in [(17, 23, 9), (5, 6, 7), (16, 16, 16)]:
        y = net(torch.rand(1, 2, *shape))
        assert y.shape == (1, 3, *shape)
        assert y.dtype == torch.float32 and y.is_contiguous()


def test_untrained_net_is_near_identity():
    torch.manual_seed(0)
    net = UNet3D()
    y = net(torch.rand(1, 2, 20, 19, 18))
    assert y.abs().max().item() < 1e-2


def test_gradients_flow_to_every_layer():
    torch.manual_seed(0)
    net = UNet3D(features=(4, 8), final_features=(4,))
    x = torch.rand(2, 2, 11, 12, 13)
    (net(x) - 1.0).pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.flow.weight.grad.abs().sum() > 0
    assert net.encoder[0].conv.weight.grad.abs().sum() > 0


def test_fast_and_plain_agree():
    torch.manual_seed(0)
    fast = UNet3D(features=(4, 8), final_features=(4,), init_std=0.1)
    plain = UNet3D(features=(4, 8), final_features=(4,), init_std=0.1, fast=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.rand(1, 2, 12, 12, 12)
    a, b = fast(x), plain(x)
    assert torch.allclose(a, b, atol=0.05 * b.abs().max().item() + 1e-6)


def test_autocast_context_cpu_is_bf16():
    with autocast_context("cpu"):
        y = torch.nn.functional.linear(torch.rand(2, 3), torch.rand(4, 3))
    assert y.dtype == torch.bfloat16
    with autocast_context("cpu", enabled=False):
        y = torch.nn.functional.linear(torch.rand(2, 3), torch.rand(4, 3))
    assert y.dtype == torch.float32
