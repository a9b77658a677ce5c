"""VisTR's transformer: DETR's post-norm encoder/decoder (the shared layers of
`vis_zoo.modeling.transformer_layers`) run over all T·h·w tokens of a clip.

The shared layers keep the official parameter names, so official checkpoints map one-to-one. They
call attention with `need_weights=False`, which makes PyTorch use `scaled_dot_product_attention`
instead of materialising the attention weights as the official code does — same outputs, far less
memory for the (T·h·w)² encoder attention; we also drop an all-False padding mask for the same
reason.
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from vis_zoo.modeling.transformer_layers import (
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    clone_modules,
)


def _padding_or_none(key_padding_mask: Optional[Tensor]) -> Optional[Tensor]:
    """None when nothing is padded: the unmasked attention kernels are faster and leaner."""
    if key_padding_mask is None or not bool(key_padding_mask.any()):
        return None
    return key_padding_mask


class Encoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int, norm_dim: Optional[int] = None):
        super().__init__()
        self.layers = clone_modules(layer, num_layers)
        self.norm = nn.LayerNorm(norm_dim) if norm_dim else None

    def forward(self, src: Tensor, key_padding_mask: Optional[Tensor], pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, src_key_padding_mask=key_padding_mask, pos=pos)
        return src if self.norm is None else self.norm(src)  # post-norm DETR: no final norm


class Decoder(nn.Module):
    """Returns every layer's output after the shared final LayerNorm: [L, Q, B, C]."""

    def __init__(self, layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = clone_modules(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos) -> Tensor:
        intermediate: List[Tensor] = []
        for layer in self.layers:
            tgt = layer(
                tgt,
                memory,
                memory_key_padding_mask=memory_key_padding_mask,
                pos=pos,
                query_pos=query_pos,
            )
            intermediate.append(self.norm(tgt))
        return torch.stack(intermediate)


class VisTRTransformer(nn.Module):
    """6-layer encoder over the clip's tokens + 6-layer decoder over N·T frame-major queries."""

    def __init__(
        self,
        *,
        d_model: int = 384,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
    ):
        super().__init__()
        enc_layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, normalize_before=normalize_before
        )
        dec_layer = TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, normalize_before=normalize_before
        )
        # pre-norm needs a final encoder LayerNorm (official: encoder_norm only when
        # normalize_before)
        self.encoder = Encoder(enc_layer, num_encoder_layers, d_model if normalize_before else None)
        self.decoder = Decoder(dec_layer, num_decoder_layers, d_model)
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, src: Tensor, mask: Tensor, query_embed: Tensor, pos: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            src: [B, C, T, h, w] projected C5 features of the clip.
            mask: bool [B, T, h, w], True on padding.
            query_embed: [Q, C] learned query positions (Q = T·N, frame-major).
            pos: [B, C, T, h, w] positional encoding.
        Returns:
            hs: [L, B, Q, C] every decoder layer's normalised output.
            memory: [B, C, T, h, w] encoder output.
        """
        bs, c, t, h, w = src.shape
        tokens = src.flatten(2).permute(2, 0, 1)  # [T·h·w, B, C], t-major then y then x
        pos = pos.flatten(2).permute(2, 0, 1)
        key_padding_mask = _padding_or_none(mask.flatten(1))
        query_pos = query_embed.unsqueeze(1).repeat(1, bs, 1)
        tgt = torch.zeros_like(query_pos)
        memory = self.encoder(tokens, key_padding_mask, pos)
        hs = self.decoder(tgt, memory, key_padding_mask, pos, query_pos)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(bs, c, t, h, w)
