"""Mask2Former-VIS's decoder: the masked-attention decoder with clip-level queries.

The same modules and parameters as `MultiScaleMaskedTransformerDecoder` (so one checkpoint layout
serves the image model, MinVIS and Mask2Former-VIS); what differs is the input. Each of the Q
queries is one object of a clip of T frames:

- the keys of level l are the projected features of all T frames, frame-major ([T*h_l*w_l, B, C]),
  with a 3-D (t, y, x) sine encoding: the 2-D encoding of each frame plus the encoding of the frame
  index (`PositionEmbeddingSineTime`);
- a query's mask is its mask embedding dotted with every frame's mask features
  ([B, Q, T, H/4, W/4]), and its masked attention lets it see the keys of every frame where that
  mask (resized to the level) is >= 0.5.

Cheng et al., "Mask2Former for Video Instance Segmentation" (arXiv 2112.10764); official
`VideoMultiScaleMaskedTransformerDecoder` (facebookresearch/Mask2Former, mask2former_video/).
"""

from typing import List, Sequence, Tuple

from torch import Tensor

from vis_zoo.modeling.position_encoding import PositionEmbeddingSineTime

from .transformer_decoder import MultiScaleMaskedTransformerDecoder

__all__ = ["VideoMultiScaleMaskedTransformerDecoder"]


class VideoMultiScaleMaskedTransformerDecoder(MultiScaleMaskedTransformerDecoder):
    """Masked-attention decoder over clips (official parameter names; no parameter of its own).

    forward(x, mask_features) -> dict, as the image decoder's with a frame axis:
        x: 3 maps [B, T, C, h_l, w_l] (coarsest first); mask_features [B, T, mask_dim, H/4, W/4].
        "pred_logits" [B, Q, K+1], "pred_masks" [B, Q, T, H/4, W/4] (last set), "aux_outputs".
    forward_queries(x, level_mask_features) (level_mask_features[l]: [B, T, mask_dim, h_l, w_l])
        -> {"frame_queries": [1, B, Q, C] (the decoder_norm'ed clip queries), "pred_logits"}: the
        inference path without the /4 masks of every query.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        hidden_dim = self.query_feat.weight.shape[1]
        self.time_pe_layer = PositionEmbeddingSineTime(hidden_dim)

    def _memory(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[tuple]]:
        """Per level: keys [T*h_l*w_l, B, C] (frame-major), their 3-D sine encoding, (h_l, w_l)."""
        if any(level.dim() != 5 for level in x):
            raise ValueError(
                "the clip decoder takes feature maps [B, T, C, h, w], got "
                f"{[tuple(level.shape) for level in x]}"
            )
        num_videos, num_frames = x[0].shape[:2]
        # the image decoder's keys and 2-D encoding of every frame: [h*w, B*T, C], video-major
        src, pos, sizes = super()._memory([level.flatten(0, 1) for level in x])
        time_pos = self.time_pe_layer(num_frames, x[0].device).repeat(num_videos, 1)  # [B*T, C]

        def clip_major(tokens: Tensor) -> Tensor:
            hw, _, channels = tokens.shape
            tokens = tokens.view(hw, num_videos, num_frames, channels).permute(2, 0, 1, 3)
            return tokens.flatten(0, 1)

        src = [clip_major(s) for s in src]
        pos = [clip_major(p + time_pos.to(p.dtype)) for p in pos]
        return src, pos, sizes
