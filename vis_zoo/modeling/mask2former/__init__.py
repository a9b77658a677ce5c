"""Mask2Former (Cheng et al., CVPR 2022) as a reusable image-level detector: MSDeformAttn pixel
decoder, masked-attention transformer decoder with frame queries, point-sampled matcher and
criterion. VITA and MinVIS run it per frame (`video_inference`, `video_targets`); with T = 1 it is
the plain image model. Mask2Former-VIS runs the same modules with clip queries
(`VideoMultiScaleMaskedTransformerDecoder`)."""

from .config import add_mask2former_config
from .criterion import Mask2FormerCriterion, build_mask2former_criterion, point_sampled_mask_losses
from .head import (
    Mask2FormerHead,
    Mask2FormerVideoSegmenter,
    build_mask2former_head,
    mask2former_model_kwargs,
)
from .layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .matcher import PointHungarianMatcher
from .pixel_decoder import MSDeformAttnPixelDecoder
from .targets import video_targets
from .transformer_decoder import MultiScaleMaskedTransformerDecoder
from .video_transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "add_mask2former_config",
    "Mask2FormerCriterion",
    "point_sampled_mask_losses",
    "Mask2FormerHead",
    "Mask2FormerVideoSegmenter",
    "build_mask2former_head",
    "CrossAttentionLayer",
    "FFNLayer",
    "SelfAttentionLayer",
    "PointHungarianMatcher",
    "MSDeformAttnPixelDecoder",
    "MultiScaleMaskedTransformerDecoder",
    "video_targets",
    "build_mask2former_criterion",
    "VideoMultiScaleMaskedTransformerDecoder",
    "mask2former_model_kwargs",
]
