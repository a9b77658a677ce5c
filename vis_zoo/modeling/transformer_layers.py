"""DETR-style transformer layers (post-norm or pre-norm) and the MLP head.

Sequence-first layout everywhere: tokens are [S, N, C] (S tokens, N sequences, C channels), as in
``nn.MultiheadAttention`` with ``batch_first=False``. The attribute names (``self_attn``,
``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``) match DETR's, so official checkpoints of
DETR-derived methods map onto them one to one.
"""

import copy
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from vis_zoo.modeling.attention import MaskedMultiheadAttention


def get_activation_fn(name: str):
    """'relu' | 'gelu' | 'glu' -> the functional."""
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "glu":
        return F.glu
    raise ValueError(f"activation should be relu/gelu/glu, not {name!r}")


def clone_modules(module: nn.Module, n: int) -> nn.ModuleList:
    """`n` independent deep copies of `module` (separate weights)."""
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def with_pos(tensor: Tensor, pos: Optional[Tensor]) -> Tensor:
    return tensor if pos is None else tensor + pos


def self_attention(
    attn: nn.Module,
    x: Tensor,
    pos: Optional[Tensor],
    attn_mask: Optional[Tensor],
    key_padding_mask: Optional[Tensor],
) -> Tensor:
    """`attn` over x [S, N, C] with positions added to queries and keys only -> [S, N, C]."""
    q = k = with_pos(x, pos)
    return attn(
        q,
        k,
        value=x,
        attn_mask=attn_mask,
        key_padding_mask=key_padding_mask,
        need_weights=False,
    )[0]


def cross_attention(
    attn: nn.Module,
    x: Tensor,
    memory: Tensor,
    pos: Optional[Tensor],
    query_pos: Optional[Tensor],
    attn_mask: Optional[Tensor],
    key_padding_mask: Optional[Tensor],
) -> Tensor:
    """`attn` from queries x [Q, N, C] (+ query_pos) to memory [S, N, C] (+ pos on keys only) -> [Q,
    N, C]."""
    return attn(
        query=with_pos(x, query_pos),
        key=with_pos(memory, pos),
        value=memory,
        attn_mask=attn_mask,
        key_padding_mask=key_padding_mask,
        need_weights=False,
    )[0]


class _DetrLayer(nn.Module):
    """What DETR's encoder and decoder layers share: self-attention, (cross-attention,) the FFN, and
    one LayerNorm + dropout per sub-block (two for the encoder, three for the decoder).

    Modules are registered in DETR's order so that parameter order, and hence seeded initialisation
    and optimizer state, match the official layers.
    """

    has_cross_attention: bool

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = MaskedMultiheadAttention(d_model, nhead, dropout=dropout)
        if self.has_cross_attention:
            self.multihead_attn = MaskedMultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        if self.has_cross_attention:
            self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        if self.has_cross_attention:
            self.dropout3 = nn.Dropout(dropout)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class TransformerEncoderLayer(_DetrLayer):
    """Self-attention + FFN. Post-norm (DETR default): x = LN(x + SA(x+pos, x+pos, x));
    x = LN(x + FFN(x)).
    Pre-norm: x = x + SA(LN(x)+pos, ...); x = x + FFN(LN(x)).

    forward(src [S, N, C], src_mask [S, S] or [N*heads, S, S], src_key_padding_mask bool [N, S]
    (True = ignore), pos [S, N, C]) -> [S, N, C].
    """

    has_cross_attention = False

    def forward(
        self,
        src: Tensor,
        src_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
    ) -> Tensor:
        if self.normalize_before:
            src2 = self.norm1(src)
            src2 = self_attention(self.self_attn, src2, pos, src_mask, src_key_padding_mask)
            src = src + self.dropout1(src2)
            src = src + self.dropout2(self._ffn(self.norm2(src)))
            return src
        src2 = self_attention(self.self_attn, src, pos, src_mask, src_key_padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src = self.norm2(src + self.dropout2(self._ffn(src)))
        return src


class TransformerDecoderLayer(_DetrLayer):
    """Self-attention over queries -> cross-attention to memory -> FFN (DETR order).

    forward(tgt [Q, N, C], memory [S, N, C], tgt_mask, memory_mask, tgt_key_padding_mask [N, Q],
    memory_key_padding_mask bool [N, S] (True = ignore), pos [S, N, C] (memory positions),
    query_pos [Q, N, C]) -> [Q, N, C].
    """

    has_cross_attention = True

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Optional[Tensor] = None,
        memory_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        memory_key_padding_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        if self.normalize_before:
            tgt2 = self.norm1(tgt)
            tgt2 = self_attention(self.self_attn, tgt2, query_pos, tgt_mask, tgt_key_padding_mask)
            tgt = tgt + self.dropout1(tgt2)
            tgt2 = cross_attention(
                self.multihead_attn,
                self.norm2(tgt),
                memory,
                pos,
                query_pos,
                memory_mask,
                memory_key_padding_mask,
            )
            tgt = tgt + self.dropout2(tgt2)
            tgt = tgt + self.dropout3(self._ffn(self.norm3(tgt)))
            return tgt
        tgt2 = self_attention(self.self_attn, tgt, query_pos, tgt_mask, tgt_key_padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = cross_attention(
            self.multihead_attn, tgt, memory, pos, query_pos, memory_mask, memory_key_padding_mask
        )
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt = self.norm3(tgt + self.dropout3(self._ffn(tgt)))
        return tgt


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (none after the last), as DETR's MLP.

    Parameters are named ``layers.{i}.weight/bias``. forward([..., input_dim]) -> [..., output_dim].
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return x
