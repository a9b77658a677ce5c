"""Shared modeling pieces used by every VIS Zoo method.

- attention: multi-head attention whose masks cannot give NaN in PyTorch's blocked kernels
- backbone: frame normalisation/padding, per-level padding masks, chunked per-frame feature cache
- position_encoding: 2-D sine encoding (DETR; Deformable-DETR via ``offset=-0.5``)
- transformer_layers: DETR post-/pre-norm encoder and decoder layers, MLP
- losses: sigmoid focal / dice losses with the N_m normaliser, pairwise mask costs
- matcher: mask-based Hungarian matcher (batched costs)
- criterion: clip-level mask set criterion with auxiliary losses
- targets: clip-level ground truth from the training mapper's Instances
- clip_association: window schedule + soft-IoU association of windows (long videos)
- pointwise: 1×1 convolutions as one batched matmul on CPU (oneDNN is slow at odd widths)
- postprocessing: per-frame upsampling to the original size, bool or RLE output, output contract
  and its check (`check_video_output`)
- meta_arch: `VideoInstanceSegmenter`, the interface every method's meta-architecture implements
- query_matching: frame-to-frame Hungarian alignment of query embeddings (MinVIS's tracker)
"""

from .attention import MASKED_SCORE, MaskedMultiheadAttention, additive_attention_mask
from .backbone import (
    FoldedBackboneCache,
    FrameFeatureCache,
    backbone_with_masks,
    fold_frozen_batchnorm,
    input_frames,
    normalize_and_pad,
    padding_mask,
    video_frames,
)
from .clip_association import (
    ClipPrediction,
    SoftIoUTrackAssociator,
    associate_clip_windows,
    window_spans,
)
from .criterion import ClipMaskSetCriterion, num_masks_normalizer, src_permutation_idx
from .losses import (
    dice_loss,
    pairwise_dice_coefficient,
    pairwise_sigmoid_focal_cost,
    sigmoid_ce_loss,
    sigmoid_focal_loss,
)
from .matcher import MaskHungarianMatcher
from .pointwise import PointwiseConv2d, PointwiseConv3d, pointwise_conv
from .position_encoding import PositionEmbeddingSine2D
from .meta_arch import VideoInstanceSegmenter
from .postprocessing import (
    RLEFrameStore,
    StoredTrackMasks,
    VideoMaskWriter,
    build_video_output,
    check_video_output,
    decode_track_masks,
    empty_video_output,
    encode_rle,
    select_track_classes,
    track_has_pixels,
)
from .query_matching import match_queries_to_previous_frame
from .targets import clip_targets_from_batch, downsample_clip_masks
from .transformer_layers import (
    MLP,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    clone_modules,
    get_activation_fn,
)

__all__ = [
    "MASKED_SCORE",
    "MaskedMultiheadAttention",
    "additive_attention_mask",
    "FoldedBackboneCache",
    "FrameFeatureCache",
    "backbone_with_masks",
    "fold_frozen_batchnorm",
    "input_frames",
    "normalize_and_pad",
    "padding_mask",
    "video_frames",
    "ClipPrediction",
    "SoftIoUTrackAssociator",
    "associate_clip_windows",
    "window_spans",
    "ClipMaskSetCriterion",
    "num_masks_normalizer",
    "src_permutation_idx",
    "dice_loss",
    "pairwise_dice_coefficient",
    "pairwise_sigmoid_focal_cost",
    "sigmoid_ce_loss",
    "sigmoid_focal_loss",
    "MaskHungarianMatcher",
    "PointwiseConv2d",
    "PointwiseConv3d",
    "pointwise_conv",
    "PositionEmbeddingSine2D",
    "VideoInstanceSegmenter",
    "RLEFrameStore",
    "StoredTrackMasks",
    "VideoMaskWriter",
    "build_video_output",
    "check_video_output",
    "decode_track_masks",
    "empty_video_output",
    "encode_rle",
    "select_track_classes",
    "track_has_pixels",
    "match_queries_to_previous_frame",
    "clip_targets_from_batch",
    "downsample_clip_masks",
    "MLP",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "clone_modules",
    "get_activation_fn",
]
