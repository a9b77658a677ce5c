"""SeqFormer's deformable transformer: a per-frame deformable encoder (shared with vis_zoo) and the
decoder whose video-level instance queries are split into per-frame box queries.

Shapes: B videos, T frames, Q queries, C channels, L levels, S = sum_l H_l * W_l tokens per frame.
Parameter names follow the official code (wjf5203/SeqFormer, models/deformable_transformer.py).
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vis_zoo.modeling.attention import MaskedMultiheadAttention
from vis_zoo.modeling.deformable_transformer import (
    DeformableEncoder,
    DeformableEncoderLayer,
    reset_deformable_parameters,
)
from vis_zoo.modeling.ms_deform_attn import (
    MSDeformAttn,
    ms_deform_attn_core,
    spatial_shapes_to_list,
)
from vis_zoo.modeling.transformer_layers import MLP, clone_modules, get_activation_fn

__all__ = [
    "inverse_sigmoid",
    "SeqFormerMSDeformAttn",
    "SeqFormerDecoderLayer",
    "SeqFormerDecoder",
    "SeqFormerTransformer",
]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 - x)) with both clamped to >= eps (Deformable DETR)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class SeqFormerMSDeformAttn(MSDeformAttn):
    """MSDeformAttn plus `output_proj_box`, a second projection of the sampled features that updates
    the box queries. Every official instance has it (the encoder's are unused but are checkpointed).
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__(d_model, n_levels, n_heads, n_points)
        # official init: PyTorch's default Linear init, then the transformer-wide xavier on weights
        self.output_proj_box = nn.Linear(d_model, d_model)


class SeqFormerDecoderLayer(nn.Module):
    """One decoder layer (post-norm, dropout 0.1).

    Instance query `tgt` [B, Q, C]; box queries `tgt_box` [B, T, Q, C] (or [B, Q, C] before the
    first layer, when all frames share it).
    """

    def __init__(
        self,
        d_model=256,
        d_ffn=1024,
        dropout=0.1,
        activation="relu",
        n_levels=4,
        n_heads=8,
        n_points=4,
    ):
        super().__init__()
        self.cross_attn = SeqFormerMSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.dropout1_box = nn.Dropout(dropout)
        self.norm1_box = nn.LayerNorm(d_model)
        self.self_attn = MaskedMultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.self_attn_box = MaskedMultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2_box = nn.Dropout(dropout)
        self.norm2_box = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = get_activation_fn(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.linear1_box = nn.Linear(d_model, d_ffn)
        self.activation_box = get_activation_fn(activation)
        self.dropout3_box = nn.Dropout(dropout)
        self.linear2_box = nn.Linear(d_ffn, d_model)
        self.dropout4_box = nn.Dropout(dropout)
        self.norm3_box = nn.LayerNorm(d_model)
        self.time_attention_weights = nn.Linear(d_model, 1)

    @staticmethod
    def _self_attention(attn: MaskedMultiheadAttention, x: Tensor, pos: Tensor) -> Tensor:
        """MHA(q = k = x + pos, v = x) over the queries; x, pos [N, Q, C] -> [N, Q, C]."""
        q = (x + pos).transpose(0, 1)
        return attn(q, q, x.transpose(0, 1), need_weights=False)[0].transpose(0, 1)

    def forward(
        self,
        tgt: Tensor,
        tgt_box: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        values: Tensor,
        spatial_shapes: List[Tuple[int, int]],
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            tgt [B, Q, C]; tgt_box [B, Q, C] (first layer) or [B, T, Q, C]; query_pos [B, Q, C].
            reference_points: [B, T, Q, L, 2 or 4], already multiplied by the valid ratios.
            values: [B*T, S, heads, head_dim], `cross_attn.value_proj` of each frame's memory with
                padded tokens zeroed (see SeqFormerDecoder.frame_values).
        Returns:
            tgt [B, Q, C], tgt_box [B, T, Q, C].
        """
        b, t, q = reference_points.shape[:3]
        # 1. instance-query self-attention
        tgt = self.norm2(tgt + self.dropout2(self._self_attention(self.self_attn, tgt, query_pos)))
        # 2. box-query self-attention, each frame separately with shared weights
        if tgt_box.dim() == 3:
            tgt_box = self.norm2_box(
                tgt_box
                + self.dropout2_box(self._self_attention(self.self_attn_box, tgt_box, query_pos))
            )
            box_query = (tgt_box + query_pos).unsqueeze(1).expand(b, t, q, -1)
        else:
            flat = tgt_box.flatten(0, 1)
            pos = query_pos.unsqueeze(1).expand(b, t, q, -1).flatten(0, 1)
            flat = self.norm2_box(
                flat + self.dropout2_box(self._self_attention(self.self_attn_box, flat, pos))
            )
            tgt_box = flat.view(b, t, q, -1)
            box_query = tgt_box + query_pos.unsqueeze(1)
        # 3. per-frame deformable cross-attention; offsets/weights come from the box query
        attn = self.cross_attn
        locations, weights = attn.sampling(
            box_query.flatten(0, 1), reference_points.flatten(0, 1), spatial_shapes
        )
        sampled = ms_deform_attn_core(
            values, spatial_shapes, locations, weights, attn.recompute_backward
        ).view(b, t, q, -1)
        inst_update = attn.output_proj(sampled)  # [B, T, Q, C]
        box_update = attn.output_proj_box(sampled)
        # 4. box query update
        if tgt_box.dim() == 3:
            tgt_box = tgt_box.unsqueeze(1)
        tgt_box = self.norm1_box(tgt_box + self.dropout1_box(box_update))
        ffn = self.linear2_box(self.dropout3_box(self.activation_box(self.linear1_box(tgt_box))))
        tgt_box = self.norm3_box(tgt_box + self.dropout4_box(ffn))
        # 5. temporal aggregation of the per-frame instance updates with learned weights
        time_weight = F.softmax(self.time_attention_weights(tgt_box), 1)  # [B, T, Q, 1]
        tgt2 = (inst_update * time_weight).sum(1)
        # 6. instance query update
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        tgt = self.norm3(tgt + self.dropout4(ffn))
        return tgt, tgt_box


class SeqFormerDecoder(nn.Module):
    """Decoder layers with iterative box refinement (`bbox_embed[l]` refines the per-frame boxes).

    `bbox_embed` is owned here (the official model also lists it as `detr.bbox_embed`, the same
    tensors); the meta-architecture uses it for the box outputs.
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = clone_modules(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.bbox_embed = clone_modules(MLP(d_model, d_model, 4, 3), num_layers)

    def frame_values(
        self, layer: SeqFormerDecoderLayer, memory: Tensor, padding_mask: Optional[Tensor]
    ):
        """memory [B*T, S, C] -> this layer's values [B*T, S, heads, head_dim]."""
        attn = layer.cross_attn
        value = attn.value_proj(memory)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        return value.view(
            memory.shape[0], memory.shape[1], attn.n_heads, attn.d_model // attn.n_heads
        )

    def forward(
        self,
        tgt: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes,
        valid_ratios: Tensor,
        query_pos: Tensor,
        padding_mask: Optional[Tensor] = None,
    ):
        """
        Args:
            tgt, query_pos: [B, Q, C]. reference_points: [B, T, Q, 2] (sigmoid space).
            memory: [B, T, S, C]. valid_ratios: [B, L, 2]. padding_mask: [B, T, S].
        Returns:
            hs [n_layers, B, Q, C]; hs_box [n_layers, B, T, Q, C];
            boxes [n_layers, B, T, Q, 4] (refined boxes of each layer, with gradient);
            references: list of n_layers tensors [B, T, Q, 2 or 4], the reference entering each
            layer.
        """
        b, t = memory.shape[:2]
        shapes = spatial_shapes_to_list(spatial_shapes)
        memory = memory.flatten(0, 1)
        padding_mask = None if padding_mask is None else padding_mask.flatten(0, 1)
        output, output_box = tgt, tgt
        hs, hs_box, boxes, references = [], [], [], []
        for lid, layer in enumerate(self.layers):
            references.append(reference_points)
            if reference_points.shape[-1] == 4:
                ratios = torch.cat([valid_ratios, valid_ratios], -1)
            else:
                ratios = valid_ratios
            ref_input = reference_points[:, :, :, None] * ratios[:, None, None]
            values = self.frame_values(layer, memory, padding_mask)
            output, output_box = layer(output, output_box, query_pos, ref_input, values, shapes)
            delta = self.bbox_embed[lid](output_box)
            if reference_points.shape[-1] == 4:
                new_ref = (delta + inverse_sigmoid(reference_points)).sigmoid()
            else:
                new_ref = torch.cat(
                    [delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1
                ).sigmoid()
            reference_points = new_ref.detach()
            hs.append(output)
            hs_box.append(output_box)
            boxes.append(new_ref)
        return torch.stack(hs), torch.stack(hs_box), torch.stack(boxes), references


class SeqFormerTransformer(nn.Module):
    """Per-frame deformable encoder + SeqFormer decoder; owns `level_embed` and
    `reference_points`."""

    def __init__(
        self,
        d_model=256,
        nhead=8,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dim_feedforward=1024,
        dropout=0.1,
        activation="relu",
        num_feature_levels=4,
        dec_n_points=4,
        enc_n_points=4,
    ):
        super().__init__()
        self.d_model, self.nhead, self.num_feature_levels = d_model, nhead, num_feature_levels
        enc_layer = DeformableEncoderLayer(
            d_model,
            dim_feedforward,
            dropout,
            activation,
            num_feature_levels,
            nhead,
            enc_n_points,
            attn=SeqFormerMSDeformAttn,
        )
        self.encoder = DeformableEncoder(enc_layer, num_encoder_layers)
        dec_layer = SeqFormerDecoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead, dec_n_points
        )
        self.decoder = SeqFormerDecoder(dec_layer, num_decoder_layers, d_model)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self):
        # Deformable DETR: xavier on every matrix, then MSDeformAttn's own init. The bbox MLPs are
        # re-initialised by the meta-architecture (as the official DeformableDETR does after this).
        reset_deformable_parameters(self)
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def encode(
        self,
        src: Tensor,
        pos: Tensor,
        padding_mask: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
    ) -> Tensor:
        """Encoder on flattened frames: src, pos [F, S, C] (pos includes level_embed),
        padding_mask [F, S], valid_ratios [F, L, 2] -> memory [F, S, C]."""
        return self.encoder(src, spatial_shapes, level_start_index, valid_ratios, pos, padding_mask)

    def decode(
        self,
        memory: Tensor,
        padding_mask: Optional[Tensor],
        spatial_shapes,
        valid_ratios: Tensor,
        query_embed: Tensor,
    ):
        """memory [B, T, S, C]; padding_mask [B, T, S]; valid_ratios [B, L, 2]; query_embed [Q, 2C].

        Returns the decoder outputs (see SeqFormerDecoder.forward).
        """
        b, t = memory.shape[:2]
        c = self.d_model
        query_pos, tgt = torch.split(query_embed, c, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        tgt = tgt.unsqueeze(0).expand(b, -1, -1)
        reference_points = self.reference_points(query_pos).sigmoid()
        reference_points = reference_points.unsqueeze(1).repeat(1, t, 1, 1)  # [B, T, Q, 2]
        return self.decoder(
            tgt, reference_points, memory, spatial_shapes, valid_ratios, query_pos, padding_mask
        )
