"""Mask2Former's attention/FFN blocks (post-norm by default), shared by its decoder and VITA.

Sequence-first layout: tokens are [S, N, C]. Each block owns its own LayerNorm (named ``norm``) so
that official Mask2Former/VITA checkpoints (``self_attn`` / ``multihead_attn`` / ``linear1`` /
``linear2`` / ``norm``) map onto these modules one to one. These differ from DETR's layers
(`vis_zoo.modeling.transformer_layers`), where one layer holds attention + FFN and three norms.
"""

from typing import Optional

from torch import Tensor, nn

from vis_zoo.modeling.attention import MaskedMultiheadAttention
from vis_zoo.modeling.transformer_layers import (
    cross_attention,
    get_activation_fn,
    self_attention,
)

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer"]


def _xavier_init(module: nn.Module) -> None:
    # Mask2Former initialises every matrix of these blocks with xavier_uniform.
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class _ResidualBlock(nn.Module):
    """One sub-block with its own LayerNorm (``norm``) and dropout around the residual."""

    def _add_norm_and_dropout(self, d_model: int, dropout: float, normalize_before: bool) -> None:
        # Registered after the sub-block's own weights (official parameter order), then every
        # matrix is initialised.
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def _add_residual(self, tgt: Tensor, out: Tensor) -> Tensor:
        """tgt + dropout(out), normalised afterwards unless pre-norm normalised the input."""
        if self.normalize_before:
            return tgt + self.dropout(out)
        return self.norm(tgt + self.dropout(out))


class SelfAttentionLayer(_ResidualBlock):
    """x = norm(x + SA(x + pos, x + pos, x)) (post-norm) or x = x + SA(norm(x) + pos, ...)
    (pre-norm).

    forward(tgt [S, N, C], tgt_mask: [S, S] or [N*heads, S, S] (bool True = blocked, or additive
    float), tgt_key_padding_mask: bool [N, S], query_pos: [S, N, C]) -> [S, N, C]
    """

    def __init__(
        self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        super().__init__()
        self.self_attn = MaskedMultiheadAttention(d_model, nhead, dropout=dropout)
        self._add_norm_and_dropout(d_model, dropout, normalize_before)

    def forward(
        self,
        tgt: Tensor,
        tgt_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self_attention(self.self_attn, x, query_pos, tgt_mask, tgt_key_padding_mask)
        return self._add_residual(tgt, out)


class CrossAttentionLayer(_ResidualBlock):
    """x = norm(x + MHA(x + query_pos, memory + pos, memory)) (post-norm; pre-norm optional).

    forward(tgt [Q, N, C], memory [S, N, C], memory_mask [Q, S] or [N*heads, Q, S] (bool True =
    blocked), memory_key_padding_mask bool [N, S], pos [S, N, C], query_pos [Q, N, C]) -> [Q, N, C]
    """

    def __init__(
        self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        super().__init__()
        self.multihead_attn = MaskedMultiheadAttention(d_model, nhead, dropout=dropout)
        self._add_norm_and_dropout(d_model, dropout, normalize_before)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Optional[Tensor] = None,
        memory_key_padding_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = cross_attention(
            self.multihead_attn, x, memory, pos, query_pos, memory_mask, memory_key_padding_mask
        )
        return self._add_residual(tgt, out)


class FFNLayer(_ResidualBlock):
    """x = norm(x + linear2(act(linear1(x)))) (post-norm; pre-norm optional). [S, N, C] -> [S, N,
    C]."""

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.activation = get_activation_fn(activation)
        self._add_norm_and_dropout(d_model, dropout, normalize_before)

    def forward(self, tgt: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self._add_residual(tgt, out)
