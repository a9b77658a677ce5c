"""Mask2Former's attention/FFN blocks (post-norm by default), shared by its decoder and VITA.

Sequence-first layout: tokens are [S, N, C]. Each block owns its own LayerNorm (named ``norm``) so
that official Mask2Former/VITA checkpoints (``self_attn`` / ``multihead_attn`` / ``linear1`` /
``linear2`` / ``norm``) map onto these modules one to one. These differ from DETR's layers
(`vis_zoo.modeling.transformer_layers`), where one layer holds attention + FFN and three norms.
"""

from typing import Optional

from torch import Tensor, nn

from vis_zoo.modeling.attention import MaskedMultiheadAttention
from vis_zoo.modeling.transformer_layers import get_activation_fn, with_pos

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer"]


def _xavier_init(module: nn.Module) -> None:
    # Mask2Former initialises every matrix of these blocks with xavier_uniform.
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
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
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(
        self,
        tgt: Tensor,
        tgt_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        if self.normalize_before:
            x = self.norm(tgt)
            q = k = with_pos(x, query_pos)
            out = self.self_attn(
                q,
                k,
                value=x,
                attn_mask=tgt_mask,
                key_padding_mask=tgt_key_padding_mask,
                need_weights=False,
            )[0]
            return tgt + self.dropout(out)
        q = k = with_pos(tgt, query_pos)
        out = self.self_attn(
            q,
            k,
            value=tgt,
            attn_mask=tgt_mask,
            key_padding_mask=tgt_key_padding_mask,
            need_weights=False,
        )[0]
        return self.norm(tgt + self.dropout(out))


class CrossAttentionLayer(nn.Module):
    """x = norm(x + MHA(x + query_pos, memory + pos, memory)) (post-norm; pre-norm optional).

    forward(tgt [Q, N, C], memory [S, N, C], memory_mask [Q, S] or [N*heads, Q, S] (bool True =
    blocked), memory_key_padding_mask bool [N, S], pos [S, N, C], query_pos [Q, N, C]) -> [Q, N, C]
    """

    def __init__(
        self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False
    ):
        super().__init__()
        self.multihead_attn = MaskedMultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_init(self)

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
        out = self.multihead_attn(
            query=with_pos(x, query_pos),
            key=with_pos(memory, pos),
            value=memory,
            attn_mask=memory_mask,
            key_padding_mask=memory_key_padding_mask,
            need_weights=False,
        )[0]
        if self.normalize_before:
            return tgt + self.dropout(out)
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
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
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.linear2(self.dropout(self.activation(self.linear1(x))))
        if self.normalize_before:
            return tgt + self.dropout(out)
        return self.norm(tgt + self.dropout(out))
