"""Sine position encodings: 2-D (DETR form, with the Deformable-DETR variant as options) and the
time encoding that Mask2Former-VIS adds to it for clips."""

import math
from typing import Optional

import torch
from torch import nn


def sine_channels(positions: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """positions [...] -> [..., num_feats]: channel 2i = sin(p / f_i), channel 2i+1 = cos(p / f_i),
    f_i = temperature ** (2i / num_feats) (the transformer's sinusoid, interleaved as DETR)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = positions[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine2D(nn.Module):
    """Sine/cosine encoding of (y, x) pixel positions, as in DETR.

    For every not-padded pixel, the cumulative counts along y and x (1-based) are optionally
    normalised to ``(e + offset) / (e_last + eps) * scale`` where ``e_last`` is the count at the
    last row/column. Each coordinate is encoded with ``num_pos_feats`` interleaved sin/cos channels
    of frequency ``temperature ** (2 * (i // 2) / num_pos_feats)``; the result is ``cat([y, x])``.

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

        pos_x = sine_channels(x_embed, self.num_pos_feats, self.temperature)
        pos_y = sine_channels(y_embed, self.num_pos_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).contiguous()


class PositionEmbeddingSineTime(nn.Module):
    """Sine encoding of the frame index in a clip of T frames, as Mask2Former-VIS adds it to every
    pixel's 2-D encoding (its 3-D (t, y, x) encoding: 2-D encoding of (y, x) + this, same channels).

    Frame t (0-based) sits at (t + 1) / (T + eps) * scale and is encoded with `num_channels`
    interleaved sin/cos channels (`sine_channels`): the official `PositionEmbeddingSine3D`'s
    normalised temporal term (facebookresearch/Mask2Former, mask2former_video/modeling/
    transformer_decoder/position_encoding.py).

    Args:
        num_channels: channels of the encoding (= those of the 2-D encoding it is added to).
        temperature, scale, eps: as in `PositionEmbeddingSine2D` (normalised form).
    """

    def __init__(
        self,
        num_channels: int,
        temperature: float = 10000.0,
        scale: float = 2 * math.pi,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.num_channels = num_channels
        self.temperature = temperature
        self.scale = scale
        self.eps = eps

    def forward(self, num_frames: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """float [T, num_channels] for a clip of `num_frames` frames."""
        frame = torch.arange(1, num_frames + 1, dtype=torch.float32, device=device)
        return sine_channels(
            frame / (num_frames + self.eps) * self.scale, self.num_channels, self.temperature
        )
