"""Mask2Former's MSDeformAttn pixel decoder.

    input_proj[k]  1x1 conv + GN(32) on the transformer levels, coarsest first (res5, res4, res3)
    transformer    6 post-norm deformable encoder layers over the 3 levels (sine PE + level_embed,
                   no padding mask: valid ratios 1, as the official code)
    FPN            for each finer backbone level down to `common_stride` (res2 for stride 4):
                   layer_k(adapter_k(x) + bilinear-up(previous)), adapter = 1x1 conv + GN (no bias),
                   layer = 3x3 conv + GN + ReLU (no bias)
    mask_features  1x1 conv on the finest map (the per-pixel embeddings of the frame masks)

Parameter names follow the official code (`input_proj.{i}.{0,1}`, `transformer.level_embed`,
`transformer.encoder.layers.{i}.*`, `adapter_1`, `layer_1`, `mask_features`).
"""

from typing import Dict, List

import numpy as np
import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn

from vis_zoo.modeling.deformable_transformer import (
    DeformableEncoder,
    DeformableEncoderLayer,
    flatten_levels,
    reset_deformable_parameters,
)
from vis_zoo.modeling.position_encoding import PositionEmbeddingSine2D

__all__ = ["MSDeformAttnEncoderOnly", "MSDeformAttnPixelDecoder"]


class MSDeformAttnEncoderOnly(nn.Module):
    """Deformable encoder over L levels, without padding (every map is fully valid).

    forward(srcs: L x [N, C, H_l, W_l], pos: L x [N, C, H_l, W_l]) -> (memory [N, S, C],
    spatial_shapes [L, 2], level_start_index [L]).
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        num_feature_levels: int = 3,
        enc_n_points: int = 4,
    ):
        super().__init__()
        layer = DeformableEncoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = DeformableEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        reset_deformable_parameters(self)
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: List[Tensor], pos_embeds: List[Tensor]):
        masks = [
            torch.zeros((x.shape[0], x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device)
            for x in srcs
        ]
        src_flat, _, pos_flat, spatial_shapes, level_start_index = flatten_levels(
            srcs, masks, pos_embeds, self.level_embed
        )
        valid_ratios = src_flat.new_ones((src_flat.shape[0], len(srcs), 2))
        # No padding mask: the official pixel decoder passes all-False masks (a no-op).
        memory = self.encoder(
            src_flat, spatial_shapes, level_start_index, valid_ratios, pos_flat, None
        )
        return memory, spatial_shapes, level_start_index


class MSDeformAttnPixelDecoder(nn.Module):
    """Multi-scale pixel decoder of Mask2Former.

    forward(features: name -> [N, C_name, H/s, W/s], compute_mask_features=True) returns a dict
        "multi_scale_features": `maskformer_num_feature_levels` maps [N, conv_dim, h_l, w_l],
                                coarsest first (/32, /16, /8 for R-50)
        "pixel_features":       the finest FPN map [N, conv_dim, H/4, W/4] (F4; VITA's input)
        "mask_features":        mask_features(F4) [N, mask_dim, H/4, W/4] (omitted when not asked)
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm: str = "GN",
        transformer_in_features: List[str] = ("res3", "res4", "res5"),
        common_stride: int = 4,
    ):
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"pixel decoder: backbone has no feature(s) {missing}; it has {sorted(input_shape)}"
            )
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]  # fine to coarse: res2 ... res5
        tr_shapes = sorted(
            ((k, v) for k, v in input_shape.items() if k in transformer_in_features),
            key=lambda kv: kv[1].stride,
        )
        self.transformer_in_features = [k for k, _ in tr_shapes]  # res3, res4, res5
        tr_channels = [v.channels for _, v in tr_shapes]
        self.transformer_num_feature_levels = len(self.transformer_in_features)
        self.maskformer_num_feature_levels = 3  # always 3 levels for the masked-attention decoder
        self.common_stride = common_stride

        # coarsest level first, as the official code
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for ch in tr_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
        )
        self.pe_layer = PositionEmbeddingSine2D(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        min_stride = min(v.stride for _, v in tr_shapes)
        self.num_fpn_levels = int(np.log2(min_stride) - np.log2(self.common_stride))
        use_bias = norm == ""
        self.lateral_convs, self.output_convs = [], []
        fine_shapes = [input_shape[k] for k in self.in_features[: self.num_fpn_levels]]
        for idx, shape in enumerate(fine_shapes[::-1]):
            lateral = Conv2d(
                shape.channels,
                conv_dim,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
            )
            output = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            "transformer_dim_feedforward": 1024,  # fixed in the official pixel decoder
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_in_features": list(head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES),
            "common_stride": head.COMMON_STRIDE,
        }

    def forward(
        self, features: Dict[str, Tensor], compute_mask_features: bool = True
    ) -> Dict[str, object]:
        device_type = next(iter(features.values())).device.type
        # The official pixel decoder runs in fp32 even under AMP (deformable sampling is fragile in
        # fp16).
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward(features, compute_mask_features)

    def _forward(
        self, features: Dict[str, Tensor], compute_mask_features: bool
    ) -> Dict[str, object]:
        srcs, pos = [], []
        # coarsest first (res5, res4, res3)
        for idx, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()  # the official decoder runs in fp32 (autocast off)
            srcs.append(self.input_proj[idx](x))
            no_padding = torch.zeros(
                (x.shape[0], x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device
            )
            pos.append(self.pe_layer(no_padding).to(x.dtype))
        memory, spatial_shapes, level_start_index = self.transformer(srcs, pos)
        n = memory.shape[0]
        outs = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            start = int(level_start_index[lvl])
            outs.append(memory[:, start : start + h * w].transpose(1, 2).reshape(n, -1, h, w))
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            cur = self.lateral_convs[idx](features[name].float())
            y = cur + F.interpolate(
                outs[-1], size=cur.shape[-2:], mode="bilinear", align_corners=False
            )
            outs.append(self.output_convs[idx](y))
        result = {
            "multi_scale_features": outs[: self.maskformer_num_feature_levels],
            "pixel_features": outs[-1],
        }
        if compute_mask_features:
            result["mask_features"] = self.mask_features(outs[-1])
        return result
