"""PointwiseConv2d / PointwiseConv3d: the 1×1 convolution's values and gradients, nn.Conv's
parameters."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vis_zoo.modeling.pointwise import PointwiseConv2d, PointwiseConv3d, pointwise_conv


@pytest.mark.parametrize(
    "cls, shape, conv",
    [
        (PointwiseConv2d, (3, 5, 7, 4), F.conv2d),
        (PointwiseConv3d, (2, 5, 3, 4, 6), F.conv3d),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_the_convolution(cls, shape, conv, bias):
    torch.manual_seed(0)
    layer = cls(shape[1], 3, bias=bias).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = layer(x)
    ref = conv(x, layer.weight, layer.bias)
    assert ours.shape == ref.shape and ours.is_contiguous()
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    params = [x, layer.weight] + ([layer.bias] if bias else [])
    for a, r in zip(torch.autograd.grad(ours, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, r)


def test_parameters_are_those_of_nn_conv():
    """Same names, shapes and init as nn.Conv2d(c, o, 1): checkpoints and init code apply
    unchanged."""
    torch.manual_seed(0)
    ours = PointwiseConv2d(6, 4)
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 4, 1)
    assert isinstance(ours, nn.Conv2d)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
    ours.load_state_dict(ref.state_dict())


def test_non_pointwise_settings_are_rejected():
    with pytest.raises(ValueError, match="stride"):
        PointwiseConv2d(4, 4, stride=2)
    with pytest.raises(ValueError, match="groups"):
        PointwiseConv3d(4, 4, groups=2)


def test_functional_form_on_a_contiguity_breaking_input():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 3).permute(0, 3, 1, 2)  # [2, 3, 8, 5], not contiguous
    w, b = torch.randn(4, 3, 1, 1), torch.randn(4)
    torch.testing.assert_close(pointwise_conv(x, w, b), F.conv2d(x, w, b), rtol=1e-5, atol=1e-5)
