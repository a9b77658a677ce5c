"""Mask2Former's multi-scale masked-attention transformer decoder, returning its frame queries.

Per layer i (levels cycle i mod 3 over the coarsest-first multi-scale maps):
    masked cross-attention (mask True = blocked where sigmoid(previous mask, resized to the level)
    < 0.5; rows that would be fully blocked are unblocked) -> self-attention -> FFN, all post-norm.
A prediction head (decoder_norm -> class Linear / mask MLP dotted with the mask features) runs on
the initial queries and after every layer: `num_layers + 1` prediction sets.

The decoder_norm'ed queries of each set are the *frame queries* (VITA's object tokens).
"""

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vis_zoo.modeling.position_encoding import PositionEmbeddingSine2D
from vis_zoo.modeling.transformer_layers import MLP

from .layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer

__all__ = ["MultiScaleMaskedTransformerDecoder"]


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Masked-attention decoder of Mask2Former (official parameter names).

    forward(x, mask_features, num_frame_query_layers=0) -> dict
        x: 3 maps [N, C, h_l, w_l] (coarsest first); mask_features [N, mask_dim, H/4, W/4].
        "pred_logits" [N, Q, K+1], "pred_masks" [N, Q, H/4, W/4] (last set),
        "aux_outputs": the earlier sets (list of dicts with the same keys, oldest first),
        "frame_queries": [L, N, Q, C], the decoder_norm'ed queries of the last L sets (if L > 0).

    forward_queries(x, level_mask_features, num_frame_query_layers=1) is the inference-only path
    used by VITA: it skips every per-pixel prediction at /4 and computes the attention masks
    directly at each level's size from mask features resized to that level (bilinear resizing is
    linear, so this equals resizing the /4 mask logits up to float rounding). Returns
    {"frame_queries", "pred_logits" (last set only)}.
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 10,
        pre_norm: bool = False,
        mask_dim: int = 256,
        enforce_input_project: bool = False,
        num_feature_levels: int = 3,
    ):
        super().__init__()
        if dec_layers < 2:
            raise ValueError(
                "MASK_FORMER.DEC_LAYERS counts the initial prediction too; needs >= 2, got "
                f"{dec_layers}"
            )
        self.pe_layer = PositionEmbeddingSine2D(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        # DEC_LAYERS counts the prediction on the initial queries, as the official config.
        self.num_layers = dec_layers - 1
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(self.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(self.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, 0.0, normalize_before=pre_norm)
            for _ in range(self.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.num_feature_levels = num_feature_levels
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.constant_(conv.bias, 0)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())  # identity, no parameters (as the official)
        self.num_classes = num_classes
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels: int, num_classes: int) -> dict:
        mf = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "dec_layers": mf.DEC_LAYERS,
            "pre_norm": mf.PRE_NORM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
        }

    # ---------------------------------------------------------------- helpers
    def _memory(self, x: Sequence[Tensor]):
        """Per level: keys/values [h_l*w_l, N, C] (+ level_embed), sine PE, and (h_l, w_l)."""
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"decoder expects {self.num_feature_levels} feature levels, got {len(x)}"
            )
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            feat = x[i]
            sizes.append(tuple(feat.shape[-2:]))
            no_padding = torch.zeros(
                (feat.shape[0],) + tuple(feat.shape[-2:]), dtype=torch.bool, device=feat.device
            )
            pos.append(self.pe_layer(no_padding).to(feat.dtype).flatten(2).permute(2, 0, 1))
            proj = self.input_proj[i](feat).flatten(2) + self.level_embed.weight[i][None, :, None]
            src.append(proj.permute(2, 0, 1))
        return src, pos, sizes

    def _attn_mask_from_logits(self, mask_logits: Tensor) -> Tensor:
        """[N, Q, (T,) h, w] logits at the target level -> bool [N*heads, Q, (T*)h*w], True =
        blocked."""
        blocked = mask_logits.sigmoid().flatten(2) < 0.5
        blocked = blocked.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)
        return blocked.detach()

    @staticmethod
    def mask_logits(mask_embed: Tensor, mask_features: Tensor) -> Tensor:
        """Mask embeddings [N, Q, C] · mask features [N, C, h, w] (a frame) or [N, T, C, h, w] (a
        clip, Mask2Former-VIS) -> logits [N, Q, h, w] or [N, Q, T, h, w]."""
        return torch.einsum("bqc,b...chw->bq...hw", mask_embed, mask_features)

    def prediction_heads(self, output: Tensor, mask_features: Tensor, attn_size):
        """output [Q, N, C] -> (class [N, Q, K+1], mask [N, Q, (T,) H/4, W/4], attn_mask,
        normed [N, Q, C]). Clip mask features [N, T, C, H/4, W/4] give an attention mask over the
        T*h*w keys of the clip."""
        normed = self.decoder_norm(output).transpose(0, 1)
        outputs_class = self.class_embed(normed)
        outputs_mask = self.mask_logits(self.mask_embed(normed), mask_features)
        # every (query, frame) map resized on its own: bilinear resizing acts per channel
        lead = outputs_mask.shape[:-2]
        resized = F.interpolate(
            outputs_mask.reshape(lead[0], -1, *outputs_mask.shape[-2:]),
            size=attn_size,
            mode="bilinear",
            align_corners=False,
        )
        resized = resized.view(*lead, *attn_size)
        return outputs_class, outputs_mask, self._attn_mask_from_logits(resized), normed

    def _layer(
        self, i: int, output: Tensor, src, pos, attn_mask: Tensor, query_embed: Tensor
    ) -> Tensor:
        level = i % self.num_feature_levels
        # A query whose mask is empty at this level would attend to nothing: let it see everything.
        attn_mask[torch.where(attn_mask.sum(-1) == attn_mask.shape[-1])] = False
        output = self.transformer_cross_attention_layers[i](
            output,
            src[level],
            memory_mask=attn_mask,
            memory_key_padding_mask=None,
            pos=pos[level],
            query_pos=query_embed,
        )
        output = self.transformer_self_attention_layers[i](
            output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_embed
        )
        return self.transformer_ffn_layers[i](output)

    def _initial_queries(self, n: int):
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, n, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, n, 1)
        return output, query_embed

    # ---------------------------------------------------------------- forward
    def forward(
        self, x: Sequence[Tensor], mask_features: Tensor, num_frame_query_layers: int = 0
    ) -> Dict:
        src, pos, sizes = self._memory(x)
        output, query_embed = self._initial_queries(src[0].shape[1])
        classes, masks, normed_queries = [], [], []
        cls_, mask_, attn_mask, normed = self.prediction_heads(output, mask_features, sizes[0])
        classes.append(cls_)
        masks.append(mask_)
        normed_queries.append(normed)
        for i in range(self.num_layers):
            output = self._layer(i, output, src, pos, attn_mask, query_embed)
            next_size = sizes[(i + 1) % self.num_feature_levels]
            cls_, mask_, attn_mask, normed = self.prediction_heads(output, mask_features, next_size)
            classes.append(cls_)
            masks.append(mask_)
            normed_queries.append(normed)
        out = {
            "pred_logits": classes[-1],
            "pred_masks": masks[-1],
            "aux_outputs": [
                {"pred_logits": c, "pred_masks": m} for c, m in zip(classes[:-1], masks[:-1])
            ],
        }
        if num_frame_query_layers > 0:
            out["frame_queries"] = torch.stack(normed_queries[-num_frame_query_layers:])
        return out

    def forward_queries(
        self,
        x: Sequence[Tensor],
        level_mask_features: Sequence[Tensor],
        num_frame_query_layers: int = 1,
    ) -> Dict[str, Tensor]:
        """Inference path: frame queries only. level_mask_features[l]: [N, mask_dim, h_l, w_l]."""
        src, pos, sizes = self._memory(x)
        output, query_embed = self._initial_queries(src[0].shape[1])
        first = num_frame_query_layers - 1  # keep sets [num_layers + 1 - L, num_layers]
        normed_queries = []

        def attn_mask_and_norm(out, level):
            normed = self.decoder_norm(out).transpose(0, 1)
            mask_embed = self.mask_embed(normed)
            logits = self.mask_logits(mask_embed, level_mask_features[level])
            return self._attn_mask_from_logits(logits), normed

        attn_mask, normed = attn_mask_and_norm(output, 0)
        if self.num_layers <= first:
            normed_queries.append(normed)
        for i in range(self.num_layers):
            output = self._layer(i, output, src, pos, attn_mask, query_embed)
            if i < self.num_layers - 1:
                attn_mask, normed = attn_mask_and_norm(output, (i + 1) % self.num_feature_levels)
            else:
                normed = self.decoder_norm(output).transpose(0, 1)
            if i + 1 >= self.num_layers - first:
                normed_queries.append(normed)
        return {
            "frame_queries": torch.stack(normed_queries),
            "pred_logits": self.class_embed(normed_queries[-1]),
        }
