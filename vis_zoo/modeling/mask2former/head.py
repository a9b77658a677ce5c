"""Mask2Former's head (pixel decoder + masked-attention decoder) as one image-level module.

It sees frames independently: a video of T frames is simply N = B*T images. VITA builds on it, and
with T = 1 it is the plain image instance segmenter.
"""

from typing import Dict, Sequence

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling.meta_arch import VideoInstanceSegmenter

from .pixel_decoder import MSDeformAttnPixelDecoder
from .transformer_decoder import MultiScaleMaskedTransformerDecoder
from .video_inference import DetectedFrames, run_frame_detector
from .video_transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "Mask2FormerHead",
    "Mask2FormerVideoSegmenter",
    "build_mask2former_head",
    "mask2former_model_kwargs",
]

_PIXEL_DECODERS = {"MSDeformAttnPixelDecoder": MSDeformAttnPixelDecoder}
_DECODERS = {
    "MultiScaleMaskedTransformerDecoder": MultiScaleMaskedTransformerDecoder,
    # VITA's config name for the same decoder (frame queries are always available here)
    "VitaMultiScaleMaskedTransformerDecoder": MultiScaleMaskedTransformerDecoder,
    # Mask2Former-VIS: clip queries over [B, T, ...] maps (its meta-architecture calls the
    # predictor)
    "VideoMultiScaleMaskedTransformerDecoder": VideoMultiScaleMaskedTransformerDecoder,
}


class Mask2FormerHead(nn.Module):
    """pixel_decoder + predictor (official names, so checkpoints keep `sem_seg_head.*`).

    forward(features, num_frame_query_layers=0) -> predictor outputs (see
    `MultiScaleMaskedTransformerDecoder.forward`) plus "pixel_features" (F4 [N, C, H/4, W/4]).
    forward_queries(features, num_frame_query_layers=1) -> {"frame_queries" [L, N, Q, C],
    "pred_logits" [N, Q, K+1], "pixel_features"}: the cheap inference path (no /4 frame masks).
    """

    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, predictor: nn.Module, num_classes: int):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        head = cfg.MODEL.SEM_SEG_HEAD
        if head.NAME not in ("Mask2FormerHead", "MaskFormerHead"):
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.NAME={head.NAME!r}: a Mask2Former-based model needs "
                "'Mask2FormerHead' (set by configs/vita/Base-VITA.yaml)"
            )
        if head.PIXEL_DECODER_NAME not in _PIXEL_DECODERS:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME={head.PIXEL_DECODER_NAME!r}: "
                f"choose one of {sorted(_PIXEL_DECODERS)}"
            )
        name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
        if name not in _DECODERS:
            raise ValueError(
                f"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME={name!r}: choose one of "
                f"{sorted(_DECODERS)}"
            )
        pd_cls = _PIXEL_DECODERS[head.PIXEL_DECODER_NAME]
        dec_cls = _DECODERS[name]
        pixel_decoder = pd_cls(**pd_cls.from_config(cfg, input_shape))
        num_classes = num_classes_from_config(cfg)
        predictor = dec_cls(**dec_cls.from_config(cfg, head.CONVS_DIM, num_classes))
        return {"pixel_decoder": pixel_decoder, "predictor": predictor, "num_classes": num_classes}

    def forward(self, features: Dict[str, Tensor], num_frame_query_layers: int = 0) -> Dict:
        pd = self.pixel_decoder(features, compute_mask_features=True)
        out = self.predictor(
            pd["multi_scale_features"], pd["mask_features"], num_frame_query_layers
        )
        out["pixel_features"] = pd["pixel_features"]
        return out

    def decode_pixels_for_queries(self, features: Dict[str, Tensor]) -> Dict[str, object]:
        """The pixel decoder for `predictor.forward_queries`: "multi_scale_features",
        "pixel_features" (F4 [N, C, H/4, W/4]) and "level_mask_features" (per level
        [N, mask_dim, h_l, w_l])."""
        import torch.nn.functional as F

        pd = self.pixel_decoder(features, compute_mask_features=False)
        # mask_features is a 1x1 conv and bilinear resizing a convex combination per pixel, so
        # conv(resize(F4)) == resize(conv(F4)): the attention masks need only the level-size maps.
        pd["level_mask_features"] = [
            self.pixel_decoder.mask_features(
                F.interpolate(
                    pd["pixel_features"], size=feat.shape[-2:], mode="bilinear", align_corners=False
                )
            )
            for feat in pd["multi_scale_features"]
        ]
        return pd

    def forward_queries(self, features: Dict[str, Tensor], num_frame_query_layers: int = 1) -> Dict:
        pd = self.decode_pixels_for_queries(features)
        out = self.predictor.forward_queries(
            pd["multi_scale_features"], pd["level_mask_features"], num_frame_query_layers
        )
        out["pixel_features"] = pd["pixel_features"]
        return out


def build_mask2former_head(cfg, input_shape: Dict[str, ShapeSpec]) -> Mask2FormerHead:
    return Mask2FormerHead(cfg, input_shape)


def mask2former_model_kwargs(cfg, criterion: nn.Module) -> Dict[str, object]:
    """What every meta-architecture on the Mask2Former detector takes from the config: "backbone",
    "sem_seg_head", the given "criterion", "num_classes", "size_divisibility", "pixel_mean",
    "pixel_std" (Mask2Former-VIS's `from_config` adds its test settings to these)."""
    from detectron2.modeling import build_backbone

    backbone = build_backbone(cfg)
    head = Mask2FormerHead(cfg, backbone.output_shape())
    return dict(
        backbone=backbone,
        sem_seg_head=head,
        criterion=criterion,
        num_classes=num_classes_from_config(cfg),
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        size_divisibility=cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )


class Mask2FormerVideoSegmenter(VideoInstanceSegmenter):
    """Base of the meta-architectures on the Mask2Former detector (Mask2Former-VIS, MinVIS, VITA):
    holds the detector's modules and input settings, the keyword arguments of
    `mask2former_model_kwargs`. A subclass's `__init__` takes its own settings and passes the rest
    on with `super().__init__(**detector)`, before registering any module of its own (module order
    is parameter order)."""

    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: Mask2FormerHead,
        criterion: nn.Module,
        num_classes: int,
        size_divisibility: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = num_classes
        # < 0: the backbone's own divisibility
        self.size_divisibility = (
            backbone.size_divisibility if size_divisibility < 0 else size_divisibility
        )
        self.register_pixel_normalization(pixel_mean, pixel_std)

    def detect_frames(self, frames: Sequence[Tensor], **kwargs) -> DetectedFrames:
        """`run_frame_detector` over frames (each [3, h, w]) with this model's backbone, head,
        input normalisation and the subclass's `test_chunk_size` / `test_chunk_pixels_cpu`;
        `kwargs` are its per-method arguments (feature_store, project_mask_features, on_chunk,
        ...)."""
        return run_frame_detector(
            frames,
            backbone=self.backbone,
            head=self.sem_seg_head,
            pixel_mean=self.pixel_mean,
            pixel_std=self.pixel_std,
            size_divisibility=self.size_divisibility,
            chunk_size=self.test_chunk_size,
            cpu_pixels_per_pass=self.test_chunk_pixels_cpu,
            **kwargs,
        )
