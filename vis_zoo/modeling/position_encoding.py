"""2-D sine position encodings (DETR form, with the Deformable-DETR variant as options)."""
import math
from typing import Optional

import torch
from torch import nn


class PositionEmbeddingSine2D(nn.Module):
    """Sine/cosine encoding of (y, x) pixel positions, as in DETR.

    For every not-padded pixel, the cumulative counts along y and x (1-based) are optionally
    normalised to ``(e + offset) / (e_last + eps) * scale`` where ``e_last`` is the count at the last
    row/column. Each coordinate is encoded with ``num_pos_feats`` interleaved sin/cos channels of
    frequency ``temperature ** (2 * (i // 2) / num_pos_feats)``; the result is ``cat([y, x])``.

    DETR / IFC / VisTR: ``offset=0.0``. Deformable DETR / SeqFormer: ``offset=-0.5``.

    Args:
        num_pos_feats: channels per coordinate (output has ``2 * num_pos_feats`` channels).
        temperature: frequency base.
        normalize: normalise the cumulative counts to [0, scale].
        scale: normalisation range (default 2*pi); only used when ``normalize``.
        offset: added to the counts before normalising (-0.5 in Deformable DETR).
        eps: added to the denominator.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: Optional[float] = None,
        offset: float = 0.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine2D: `scale` given but `normalize` is False")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.offset = offset
        self.eps = eps

    def forward(self, padding_mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            padding_mask: bool [N, H, W], True on padded pixels.
        Returns:
            float [N, 2 * num_pos_feats, H, W] on the mask's device.
        """
        not_mask = (~padding_mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=padding_mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)

        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        # interleave: channel 2i = sin, channel 2i+1 = cos
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).contiguous()
