"""SeqFormer's mask branch: a small FPN-like head giving 8-channel mask features at /8 per frame,
and a CondInst-style dynamic head whose 1x1-conv weights are generated per query by `controller`.

Names follow the official code (`mask_head.lay1..lay4`, `mask_head.dcn`, `controller.layers.*`).
"""

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MaskHeadSmallConv",
    "aligned_bilinear",
    "parse_dynamic_params",
    "dynamic_mask_logits",
    "mask_feature_locations",
]


class MaskHeadSmallConv(nn.Module):
    """Fuses the encoder memory at /32, /16, /8 (top-down, nearest upsampling) into 8 channels at
    /8.

    x = relu(lay3(F32)); x = relu(lay4(F16 + up(x))); x = relu(dcn(F8 + up(x)));
    x = relu(lay1(x)) (C -> C/4); x = relu(lay2(x)) (C/4 -> C/32). `dcn` is an ordinary conv.
    """

    def __init__(self, dim: int = 256):
        super().__init__()
        self.lay1 = nn.Conv2d(dim, dim // 4, 3, padding=1)
        self.lay2 = nn.Conv2d(dim // 4, dim // 32, 3, padding=1)
        self.lay3 = nn.Conv2d(dim, dim, 3, padding=1)
        self.lay4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.dcn = nn.Conv2d(dim, dim, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """feats: [F8, F16, F32], each [N, C, h_l, w_l] -> [N, C/32, h_8, w_8]."""
        x = F.relu(self.lay3(feats[-1]))
        x = F.relu(
            self.lay4(feats[-2] + F.interpolate(x, size=feats[-2].shape[-2:], mode="nearest"))
        )
        x = F.relu(
            self.dcn(feats[-3] + F.interpolate(x, size=feats[-3].shape[-2:], mode="nearest"))
        )
        x = F.relu(self.lay1(x))
        return F.relu(self.lay2(x))


def aligned_bilinear(tensor: Tensor, factor: int) -> Tensor:
    """CondInst's aligned upsampling: [N, C, h, w] -> [N, C, factor*h, factor*w].

    Replicate-pad bottom/right by 1, bilinear resize (align_corners=True) to factor*(h,w)+1,
    replicate-pad top/left by factor//2, crop to factor*(h, w).
    """
    if factor == 1:
        return tensor
    h, w = tensor.shape[-2:]
    tensor = F.pad(tensor, pad=(0, 1, 0, 1), mode="replicate")
    oh, ow = factor * h + 1, factor * w + 1
    tensor = F.interpolate(tensor, size=(oh, ow), mode="bilinear", align_corners=True)
    tensor = F.pad(tensor, pad=(factor // 2, 0, factor // 2, 0), mode="replicate")
    return tensor[:, :, : oh - 1, : ow - 1]


def mask_feature_locations(h: int, w: int, stride: int, device, dtype=torch.float32) -> Tensor:
    """Pixel position of every mask-feature cell: (j*stride + stride//2, i*stride + stride//2), [h,
    w, 2]."""
    xs = torch.arange(0, w * stride, step=stride, dtype=dtype, device=device)
    ys = torch.arange(0, h * stride, step=stride, dtype=dtype, device=device)
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((shift_x, shift_y), dim=-1) + stride // 2


def parse_dynamic_params(
    params: Tensor, channels: int, weight_nums: List[int], bias_nums: List[int]
):
    """params [Q, P] -> weights [Q, out, in] and biases [Q, out] per dynamic layer.

    The split order is [W0, W1, W2, b0, b1, b2]; each W is (out, in) row-major.
    """
    if params.shape[1] != sum(weight_nums) + sum(bias_nums):
        raise ValueError(
            f"dynamic params have {params.shape[1]} channels, expected "
            f"{sum(weight_nums) + sum(bias_nums)}"
        )
    splits = list(torch.split(params, weight_nums + bias_nums, dim=1))
    n = len(weight_nums)
    weights, biases = [], []
    for i in range(n):
        out = channels if i < n - 1 else 1
        weights.append(splits[i].reshape(params.shape[0], out, -1))
        biases.append(splits[n + i].reshape(params.shape[0], out))
    return weights, biases


def dynamic_mask_logits(
    mask_feats: Tensor,
    ref_xy: Tensor,
    params: Tensor,
    *,
    channels: int,
    weight_nums: List[int],
    bias_nums: List[int],
    feat_stride: int = 8,
    out_stride: int = 4,
    rel_coord: bool = True,
) -> Tensor:
    """Mask logits of Q queries on each of T frames.

    Args:
        mask_feats: [T, C8, h, w] mask features of one video's frames.
        ref_xy: [Q, T, 2] reference centre of each query in each frame, in (augmented) image pixels.
        params: [Q, P] dynamic parameters.
    Returns:
        [Q, T, h * feat_stride / out_stride, w * feat_stride / out_stride] logits.
    """
    t, c8, h, w = mask_feats.shape
    q = params.shape[0]
    if q == 0:
        factor = feat_stride // out_stride
        return mask_feats.new_zeros(0, t, h * factor, w * factor)
    weights, biases = parse_dynamic_params(params, channels, weight_nums, bias_nums)
    w0, b0 = weights[0], biases[0]
    if rel_coord:
        # First layer on [dx, dy, feats]: the feature part is shared by all queries of a frame, the
        # coordinate part is (x_ref - x_loc, y_ref - y_loc) in raw pixels (no normalisation).
        loc = mask_feature_locations(h, w, feat_stride, mask_feats.device, mask_feats.dtype)
        rel = ref_xy.to(mask_feats.dtype)[:, :, None, None, :] - loc  # [Q, T, h, w, 2]
        x = torch.einsum("qoc,tchw->qtohw", w0[:, :, 2:], mask_feats)
        x = x + torch.einsum("qoc,qthwc->qtohw", w0[:, :, :2], rel)
    else:
        x = torch.einsum("qoc,tchw->qtohw", w0, mask_feats)
    x = F.relu(x + b0[:, None, :, None, None])
    for i in range(1, len(weights)):
        x = torch.einsum("qoc,qtchw->qtohw", weights[i], x) + biases[i][:, None, :, None, None]
        if i < len(weights) - 1:
            x = F.relu(x)
    logits = x[:, :, 0]  # [Q, T, h, w]
    logits = aligned_bilinear(logits.reshape(q * t, 1, h, w), feat_stride // out_stride)
    return logits.view(q, t, logits.shape[-2], logits.shape[-1])
