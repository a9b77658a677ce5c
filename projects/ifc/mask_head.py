"""IFC's mask head: a small FPN on the encoded stride-32 features with res4/res3 lateral inputs,
then a dynamic 1x1 kernel per query (shared by all frames of the clip, no bias) at stride 8."""

from typing import Optional

import torch
import torch.nn.functional as F
from detectron2.layers.blocks import DepthwiseSeparableConv2d
from torch import Tensor, nn

from vis_zoo.modeling import MLP


class IFCMaskHead(nn.Module):
    """Official ``MaskHead(hidden_dim, [res4 channels, res3 channels])``.

    lay1+gn1 (no ReLU) at /32 -> + adapter1(res4), nearest-up -> lay2+gn2 (no ReLU) at /16
    -> + adapter2(res3), nearest-up -> lay3+gn3+ReLU at /8 -> depthwise 5x5 + ReLU + pointwise 1x1 +
    ReLU.
    Kernels: convert_to_weight (3-layer MLP) of each decoder output.

    The lateral 1x1 adapters depend only on the backbone features, so ``project_laterals`` may run
    per frame chunk before the clip is formed (long-video inference) -- the same ops, done earlier.

    Init: every Conv2d kaiming_uniform(a=1), bias 0.
    """

    def __init__(
        self, *, hidden_dim: int, res4_channels: int, res3_channels: int, num_groups: int = 32
    ):
        super().__init__()
        self.lay1 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1)
        self.gn1 = nn.GroupNorm(num_groups, hidden_dim)
        self.lay2 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1)
        self.gn2 = nn.GroupNorm(num_groups, hidden_dim)
        self.lay3 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1)
        self.gn3 = nn.GroupNorm(num_groups, hidden_dim)
        self.out_lay = DepthwiseSeparableConv2d(
            hidden_dim, hidden_dim, 5, padding=2, activation1=F.relu, activation2=F.relu
        )
        self.adapter1 = nn.Conv2d(res4_channels, hidden_dim, 1)
        self.adapter2 = nn.Conv2d(res3_channels, hidden_dim, 1)
        self.convert_to_weight = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)

    def project_laterals(self, res4: Tensor, res3: Tensor):
        """res4 [N, C4, h16, w16], res3 [N, C3, h8, w8] -> ([N, C, h16, w16], [N, C, h8, w8])."""
        return self.adapter1(res4), self.adapter2(res3)

    def pixel_features(self, memory: Tensor, lateral16: Tensor, lateral8: Tensor) -> Tensor:
        """memory [B*T, C, h32, w32] encoded frames + projected laterals -> [B*T, C, h8, w8]."""
        x = self.gn1(self.lay1(memory))
        x = lateral16 + F.interpolate(x, size=lateral16.shape[-2:], mode="nearest")
        x = self.gn2(self.lay2(x))
        x = lateral8 + F.interpolate(x, size=lateral8.shape[-2:], mode="nearest")
        x = F.relu(self.gn3(self.lay3(x)))
        return self.out_lay(x)

    def forward(
        self,
        memory: Tensor,
        lateral16: Tensor,
        lateral8: Tensor,
        hs: Tensor,
        pixel_feats: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            memory: [B*T, C, h32, w32]; lateral16/lateral8: projected res4/res3; hs: [L, B, Q, C].
        Returns:
            mask logits [L, B, Q, T, h8, w8].
        """
        if pixel_feats is None:
            pixel_feats = self.pixel_features(memory, lateral16, lateral8)
        bt, c, h, w = pixel_feats.shape
        b = hs.shape[1]
        kernels = self.convert_to_weight(hs)  # [L, B, Q, C]
        return torch.einsum("lbqc,btchw->lbqthw", kernels, pixel_feats.view(b, bt // b, c, h, w))
