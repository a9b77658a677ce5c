"""1×1 (and 1×1×1) convolutions computed as one batched matrix product on CPU.

oneDNN's CPU kernels for 1×1 convolutions with the odd widths of these heads (18 offset channels,
48/96/192 lateral channels, 1 output channel) are 2–30× slower than `baddbmm` on the same numbers
(measured with torch 2.3.1, 2 threads: [60, 48, 90, 160] → 18 channels 156 → 45 ms; [1, 12, 36, 90,
160] → 1 channel 35 → 1 ms). The result is the convolution's, to float rounding; parameters, their
names and their initialisation are nn.Conv2d's / nn.Conv3d's, so checkpoints load unchanged. CUDA
keeps cuDNN.
"""

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["PointwiseConv2d", "PointwiseConv3d", "pointwise_conv"]


def pointwise_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1×1 convolution (stride 1, no padding, one group) over any number of spatial dims.

    Args:
        x: [B, C, *spatial]; weight: [O, C, 1, ..., 1]; bias: [O] or None.
    Returns:
        [B, O, *spatial], contiguous.
    """
    b, c = x.shape[:2]
    out_channels = weight.shape[0]
    flat = x.reshape(b, c, -1)
    matrix = weight.reshape(out_channels, c).expand(b, -1, -1)
    if bias is None:
        y = torch.bmm(matrix, flat)
    else:
        y = torch.baddbmm(bias.view(1, out_channels, 1).expand(b, -1, flat.shape[-1]), matrix, flat)
    return y.view(b, out_channels, *x.shape[2:])


class _PointwiseMixin:
    def _check_pointwise(self) -> None:
        if (
            any(k != 1 for k in self.kernel_size)
            or any(s != 1 for s in self.stride)
            or any(p != 0 for p in self.padding)
            or self.groups != 1
            or self.padding_mode != "zeros"
        ):
            raise ValueError(
                f"{type(self).__name__} is a 1×1 convolution with stride 1, no padding and one "
                f"group; got kernel {self.kernel_size}, stride {self.stride}, padding "
                f"{self.padding}, groups {self.groups}"
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda:
            return super().forward(x)
        return pointwise_conv(x, self.weight, self.bias)


class PointwiseConv2d(_PointwiseMixin, nn.Conv2d):
    """nn.Conv2d(in_channels, out_channels, 1) whose CPU forward is `pointwise_conv`. [B, C, H, W] →
    [B, O, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias, **kwargs)
        self._check_pointwise()


class PointwiseConv3d(_PointwiseMixin, nn.Conv3d):
    """nn.Conv3d(in_channels, out_channels, 1) whose CPU forward is `pointwise_conv`.
    [B, C, T, H, W] → [B, O, T, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias, **kwargs)
        self._check_pointwise()
