"""The 3-D (t, y, x) sine positional encoding of VisTR (nothing learned)."""

import math

import torch
from torch import nn


class PositionEmbeddingSine3D(nn.Module):
    """Sine encoding over time, rows and columns of a clip's feature map.

    For each axis the running count of non-padded cells (cumsum of ~mask) is normalised by its last
    entry to (0, 2π] — no −0.5 offset, so frame t of T sits at (t+1)/T·2π — then encoded with
    `num_pos_feats` interleaved sin/cos frequencies. The three encodings are concatenated in the
    order [t, y, x], giving 3·num_pos_feats channels (384 = 3 × 128 for VisTR).
    """

    def __init__(
        self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi
    ):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            mask: bool [B, T, h, w], True on padded cells.
        Returns:
            float [B, 3·num_pos_feats, T, h, w]
        """
        if mask.dim() != 4:
            raise ValueError(
                f"PositionEmbeddingSine3D expects a [B, T, h, w] mask, got {tuple(mask.shape)}"
            )
        not_mask = ~mask
        eps = 1e-6
        t_embed = not_mask.cumsum(1, dtype=torch.float32)
        y_embed = not_mask.cumsum(2, dtype=torch.float32)
        x_embed = not_mask.cumsum(3, dtype=torch.float32)
        t_embed = t_embed / (t_embed[:, -1:, :, :] + eps) * self.scale
        y_embed = y_embed / (y_embed[:, :, -1:, :] + eps) * self.scale
        x_embed = x_embed / (x_embed[:, :, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )

        def encode(embed: torch.Tensor) -> torch.Tensor:
            # [B, T, h, w] -> [B, T, h, w, F]: sin on even frequencies, cos on odd, interleaved
            pos = embed[..., None] / dim_t
            return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=5).flatten(4)

        pos = torch.cat((encode(t_embed), encode(y_embed), encode(x_embed)), dim=4)
        return pos.permute(0, 4, 1, 2, 3).contiguous()
