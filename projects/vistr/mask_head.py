"""VisTR's mask head: per-frame box-attention maps, a small FPN ending in a deformable 3×3 conv,
then a 3-D convolution that fuses each instance's mask features over the clip's frames.

Module and parameter names follow the official `VisTRsegm` (`bbox_attention.{q,k}_linear`,
`mask_head.{lay1-4, gn1-5, adapter1-3, conv_offset, dcn}`, `insmask_head.{0..9}`) so checkpoints map
by name.
"""

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from vis_zoo.modeling.pointwise import PointwiseConv2d, PointwiseConv3d


class MHAttentionMap(nn.Module):
    """Attention logits of queries over a feature map, softmaxed over heads × pixels *together*.

    The joint softmax (instead of one per head) is a DETR quirk kept for checkpoint compatibility.
    """

    def __init__(self, query_dim: int, hidden_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.q_linear = nn.Linear(query_dim, hidden_dim)
        self.k_linear = nn.Linear(query_dim, hidden_dim)
        nn.init.zeros_(self.k_linear.bias)
        nn.init.zeros_(self.q_linear.bias)
        nn.init.xavier_uniform_(self.k_linear.weight)
        nn.init.xavier_uniform_(self.q_linear.weight)
        self.normalize_fact = float(hidden_dim / num_heads) ** -0.5

    def forward(self, q: Tensor, k: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            q: [N, Nq, C] queries; k: [N, C, h, w] features; mask: bool [N, h, w], True on padding.
        Returns:
            [N, Nq, heads, h, w] attention weights (each query's weights sum to 1 over heads ×
            pixels).
        """
        q = self.q_linear(q)
        # k_linear applied per pixel as a 1×1 conv (same weights as the linear layer)
        k = F.conv2d(k, self.k_linear.weight[:, :, None, None], self.k_linear.bias)
        head_dim = self.hidden_dim // self.num_heads
        qh = q.view(q.shape[0], q.shape[1], self.num_heads, head_dim)
        kh = k.view(k.shape[0], self.num_heads, head_dim, k.shape[-2], k.shape[-1])
        weights = torch.einsum("bqnc,bnchw->bqnhw", qh * self.normalize_fact, kh)
        if mask is not None:
            weights = weights.masked_fill(mask[:, None, None], float("-inf"))
        return F.softmax(weights.flatten(2), dim=-1).view_as(weights)


def deform_conv3x3_grid_sample(
    x: Tensor, offset: Tensor, weight: Tensor, sample_chunk: int = 0
) -> Tensor:
    """DCNv1 3×3 convolution (stride 1, padding 1, no bias) with bilinear sampling by `grid_sample`.

    Same result as `torchvision.ops.deform_conv2d(x, offset, weight, padding=1)`: tap k = (ky, kx)
    (row-major) of output pixel (i, j) reads x at (i + ky − 1 + Δy_k, j + kx − 1 + Δx_k),
    bilinearly, with zeros outside the map. On CPU its backward is far faster than torchvision's
    kernel.

    Args:
        x: [B, C, H, W]; offset: [B, 18, H, W] as (Δy, Δx) pairs per tap; weight: [O, C, 3, 3].
        sample_chunk: samples per pass (0 = all), bounds the [chunk, 9·min(C, O), H, W] temporaries.
    Returns:
        [B, O, H, W]
    """
    b, c, h, w = x.shape
    if sample_chunk and b > sample_chunk:
        return torch.cat(
            [
                deform_conv3x3_grid_sample(
                    x[s : s + sample_chunk], offset[s : s + sample_chunk], weight
                )
                for s in range(0, b, sample_chunk)
            ]
        )
    taps = torch.arange(-1, 2, device=x.device, dtype=x.dtype)
    tap_y = taps.repeat_interleave(3).view(1, 9, 1, 1)  # row-major taps: (−1,−1), (−1,0), ...
    tap_x = taps.repeat(3).view(1, 9, 1, 1)
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
    off = offset.view(b, 9, 2, h, w)
    sample_y = rows + tap_y + off[:, :, 0]  # [B, 9, H, W] pixel coordinates
    sample_x = cols + tap_x + off[:, :, 1]
    # pixel p -> grid (2p + 1) / size − 1 (align_corners=False), valid for any size >= 1
    grid = torch.stack(
        [(2 * sample_x + 1) / w - 1, (2 * sample_y + 1) / h - 1], dim=-1
    )  # [B, 9, H, W, 2]
    out_channels = weight.shape[0]
    if out_channels < c:
        # Bilinear sampling (zeros outside) is linear in x, so the taps' weights can be applied
        # first: project x to 9 tap maps of O channels (a 1×1 projection, as a matmul: [9·O, C] @
        # [B, C, H·W] comes out contiguous in the [B·9, O, H, W] layout grid_sample reads, with no
        # copy), then sample tap k's map at tap k's positions and sum. Same result; O/C of the
        # sampling work (VisTR's DCN halves its channels, and sampling is most of the mask head's
        # CPU time).
        taps_first = torch.matmul(
            weight.permute(2, 3, 0, 1).reshape(9 * out_channels, c), x.reshape(b, c, h * w)
        )
        sampled = F.grid_sample(
            taps_first.reshape(b * 9, out_channels, h, w),
            grid.view(b * 9, h, w, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        return sampled.view(b, 9, out_channels, h, w).sum(1)
    sampled = F.grid_sample(
        x, grid.view(b, 9 * h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    sampled = sampled.view(b, c, 9, h, w)
    return torch.einsum("bckhw,ock->bohw", sampled, weight.flatten(2))


class DeformConv3x3(nn.Module):
    """3×3 deformable convolution (DCNv1, no bias, one offset group) that runs on CPU and CUDA.

    The offset layout — (Δy, Δx) per kernel position, row-major — is the official CUDA op's, so its
    `weight` loads unchanged. On CUDA torchvision's kernel is used; on CPU a `grid_sample`
    formulation, whose backward is much faster than torchvision's CPU kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, sample_chunk: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=1)
        self.sample_chunk = sample_chunk  # at inference only: bounds memory on large maps

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        if x.is_cuda:
            return deform_conv2d(x, offset, self.weight, padding=(1, 1))
        chunk = 0 if torch.is_grad_enabled() else self.sample_chunk
        return deform_conv3x3_grid_sample(x, offset, self.weight, chunk)


def _group_norm(preferred_groups: int, channels: int) -> nn.GroupNorm:
    """GroupNorm with the official group count where it divides the channels (always at the official
    widths), else the largest common divisor — so narrower (e.g. synthetic) models still build."""
    return nn.GroupNorm(math.gcd(preferred_groups, channels), channels)


class MaskHeadSmallConv(nn.Module):
    """FPN-style conv head: (memory ⊕ attention maps) at /32 -> hidden/16 (24) channels at /4.

    Input x is the frame's encoder memory repeated for each query and concatenated with that query's
    attention maps (dim = hidden_dim + heads = 392). Lateral features come pre-projected by the
    adapters (see `project_fpn`), so the backbone features need not be kept at full width.
    """

    def __init__(self, dim: int, fpn_dims: List[int], context_dim: int):
        super().__init__()
        inter_dims = [dim, context_dim // 2, context_dim // 4, context_dim // 8, context_dim // 16]
        self.lay1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.gn1 = _group_norm(8, dim)
        self.lay2 = nn.Conv2d(dim, inter_dims[1], 3, padding=1)
        self.gn2 = _group_norm(8, inter_dims[1])
        self.lay3 = nn.Conv2d(inter_dims[1], inter_dims[2], 3, padding=1)
        self.gn3 = _group_norm(8, inter_dims[2])
        self.lay4 = nn.Conv2d(inter_dims[2], inter_dims[3], 3, padding=1)
        self.gn4 = _group_norm(8, inter_dims[3])
        self.gn5 = _group_norm(8, inter_dims[4])
        self.conv_offset = PointwiseConv2d(inter_dims[3], 18)
        self.dcn = DeformConv3x3(inter_dims[3], inter_dims[4])
        self.adapter1 = PointwiseConv2d(fpn_dims[0], inter_dims[1])
        self.adapter2 = PointwiseConv2d(fpn_dims[1], inter_dims[2])
        self.adapter3 = PointwiseConv2d(fpn_dims[2], inter_dims[3])
        self.out_channels = inter_dims[4]
        for name, m in self.named_modules():
            if name == "conv_offset":
                nn.init.zeros_(m.weight)  # deformable conv starts as a plain 3×3 conv
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def project_fpn(self, c4: Tensor, c3: Tensor, c2: Tensor) -> List[Tensor]:
        """The 1×1 lateral adapters: C4, C3, C2 [F, Ci, hi, wi] -> [F, 192|96|48, hi, wi]."""
        return [self.adapter1(c4), self.adapter2(c3), self.adapter3(c2)]

    def forward(self, x: Tensor, bbox_mask: Tensor, projected_fpns: List[Tensor]) -> Tensor:
        """
        Args:
            x: [F, C, h, w] encoder memory of F frames.
            bbox_mask: [F, Nq, heads, h, w] attention maps of Nq queries per frame.
            projected_fpns: outputs of `project_fpn` for the same F frames.
        Returns:
            [F·Nq, 24, h4, w4] mask features at stride 4.
        """
        nq = bbox_mask.shape[1]
        x = torch.cat(
            [x.unsqueeze(1).expand(-1, nq, -1, -1, -1).flatten(0, 1), bbox_mask.flatten(0, 1)], 1
        )
        x = F.relu(self.gn1(self.lay1(x)))
        x = F.relu(self.gn2(self.lay2(x)))
        for lateral, conv, norm in (
            (projected_fpns[0], self.lay3, self.gn3),
            (projected_fpns[1], self.lay4, self.gn4),
        ):
            x = self._add_lateral(x, lateral, nq)
            x = F.relu(norm(conv(x)))
        x = self._add_lateral(x, projected_fpns[2], nq)
        x = self.dcn(x, self.conv_offset(x))
        return F.relu(self.gn5(x))

    @staticmethod
    def _add_lateral(x: Tensor, lateral: Tensor, nq: int) -> Tensor:
        """lateral [F, C, H, W] (shared by the frame's Nq queries) + nearest-upsampled x [F·Nq, C,
        h, w]."""
        x = F.interpolate(x, size=lateral.shape[-2:], mode="nearest")
        x = x.view(lateral.shape[0], nq, *x.shape[1:]) + lateral.unsqueeze(1)
        return x.flatten(0, 1)


class DilatedConv3d(nn.Conv3d):
    """nn.Conv3d(k=3, padding=2, dilation=2) whose CPU training pass runs as 8 undilated convs.

    A dilation-2 tap only reads inputs of the output's own (t, y, x) parity, so the map splits into
    2×2×2 parity sub-grids, each convolved with the same kernel at dilation 1 / padding 1, and the
    results are interleaved back — the same sums. PyTorch's CPU backward of dilated 3-D convs is a
    slow reference kernel; this form trains several times faster. CUDA uses nn.Conv3d.

    CPU inference calls oneDNN directly: PyTorch's backend choice sends a batch-1 float input with
    N·C·T·H ≤ 20480 to the reference kernel (`slow_conv_dilated3d`), and the test-time head runs one
    slot at a time, so every clip of up to ~10 frames at 360p took it: 10–20× slower than oneDNN
    there (T = 5, 360×640, 10 slots: 3.4 s → 0.18 s for the 3-D head; at T = 36 both choose oneDNN).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=2, dilation=2)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda:
            return super().forward(x)
        if not torch.is_grad_enabled():
            if x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
                return torch.mkldnn_convolution(
                    x.contiguous(),
                    self.weight,
                    self.bias,
                    self.padding,
                    self.stride,
                    self.dilation,
                    self.groups,
                )
            return super().forward(x)
        b, c, t, h, w = x.shape
        x = F.pad(x, (0, w % 2, 0, h % 2, 0, t % 2))  # even sizes; the extra zeros act as padding
        t2, h2, w2 = x.shape[2] // 2, x.shape[3] // 2, x.shape[4] // 2
        x = (
            x.view(b, c, t2, 2, h2, 2, w2, 2)
            .permute(0, 3, 5, 7, 1, 2, 4, 6)
            .reshape(b * 8, c, t2, h2, w2)
        )
        y = F.conv3d(x, self.weight, self.bias, padding=1)
        o = y.shape[1]
        y = (
            y.view(b, 2, 2, 2, o, t2, h2, w2)
            .permute(0, 4, 5, 1, 6, 2, 7, 3)
            .reshape(b, o, 2 * t2, 2 * h2, 2 * w2)
        )
        return y[:, :, :t, :h, :w]


def build_instance_fusion_head(in_channels: int = 24, prior_prob: float = 0.0) -> nn.Sequential:
    """The 3-D conv (`insmask_head`) fusing one instance's per-frame mask features over time:
    [N, 24, T, h, w] -> [N, 1, T, h, w]. Dilated 3×3×3 convs (pad 2, dilation 2) with GN(4) + ReLU.

    prior_prob: 0 keeps PyTorch's default init of the last conv (the official model). In (0, 1), its
    bias starts at logit(prior_prob), so every pixel starts at that foreground probability (the
    focal-loss prior of Lin et al. 2017). From random init this matters: the official init starts
    every pixel at p ≈ 0.5, and the small last layer (12 inputs after GroupNorm) moves its output
    only about lr per Adam step, so the mask losses spend thousands of steps just lowering the
    background.
    """
    if not 0.0 <= prior_prob < 1.0:
        raise ValueError(f"VisTR: MODEL.VISTR.MASK_PRIOR_PROB must be in [0, 1), got {prior_prob}")
    mid = in_channels // 2
    layers: List[nn.Module] = []
    for c_in in (in_channels, mid, mid):
        layers += [DilatedConv3d(c_in, mid), _group_norm(4, mid), nn.ReLU()]
    last = PointwiseConv3d(mid, 1)
    if prior_prob > 0:
        nn.init.constant_(last.bias, -math.log((1 - prior_prob) / prior_prob))
    layers.append(last)
    return nn.Sequential(*layers)
