"""IFC meta-architecture (Hwang et al., "Video Instance Segmentation using Inter-Frame Communication
Transformers", NeurIPS 2021), following the official sukjunhwang/IFC ``Ifc`` / ``IFC`` modules.

Training: B clips of T frames -> per-frame backbone -> IFC encoder (memory bus) -> clip decoder ->
class head + dynamic mask head -> mask-based Hungarian matching and losses over the whole clip.

Inference (one video at a time, any length): per-frame work (backbone, input projection, lateral
adapters, position encoding) runs in chunks of MODEL.VIS.TEST_CHUNK_SIZE frames and is cached only
while a window needs it; the video is one clip when it has <= MODEL.VIS.TEST_WINDOW_SIZE frames,
else windows every MODEL.VIS.TEST_WINDOW_STRIDE frames joined by the shared soft-IoU association
(``vis_zoo.modeling.clip_association``). Masks stay at stride 8 until each frame is final, then are
upsampled to the original size (bool, or RLE with MODEL.VIS.OUTPUT_RLE).
"""

import logging
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling import (
    MLP,
    ClipMaskSetCriterion,
    ClipPrediction,
    FoldedBackboneCache,
    FrameFeatureCache,
    MaskHungarianMatcher,
    PositionEmbeddingSine2D,
    VideoInstanceSegmenter,
    VideoMaskWriter,
    associate_clip_windows,
    backbone_with_masks,
    build_video_output,
    clip_targets_from_batch,
    downsample_clip_masks,
    input_frames,
    normalize_and_pad,
    select_track_classes,
    video_frames,
)

from .mask_head import IFCMaskHead
from .transformer import IFCTransformer

logger = logging.getLogger(__name__)

__all__ = ["IFC"]


@META_ARCH_REGISTRY.register()
class IFC(VideoInstanceSegmenter):
    """IFC. Parameter names follow the official model with ``detr.`` dropped (see convert.py).

    The `VideoInstanceSegmenter` interface: `forward_train` returns the weighted loss dict,
    `inference_video` one output dict per video (image_size, pred_scores, pred_labels, pred_masks).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        transformer: IFCTransformer,
        mask_head: IFCMaskHead,
        criterion: ClipMaskSetCriterion,
        weight_dict: Dict[str, float],
        num_classes: int,
        num_queries: int,
        pixel_mean,
        pixel_std,
        deep_supervision: bool = True,
        mask_stride: int = 4,
        match_stride: int = 4,
        multi_class: bool = True,
        class_threshold: float = 0.01,
        match_threshold: float = 0.05,
        max_num_tracks: int = 50,
        window_size: int = 36,
        window_stride: int = 18,
        chunk_size: int = 36,
        output_rle: bool = False,
        test_store_dir: str = "",
        fold_frozen_bn: bool = True,
    ):
        super().__init__()
        shapes = backbone.output_shape()
        for level in ("res3", "res4", "res5"):
            if level not in shapes:
                raise ValueError(
                    f"IFC needs backbone outputs res3, res4, res5; got {sorted(shapes)} "
                    "(set MODEL.RESNETS.OUT_FEATURES)"
                )
        hidden_dim = transformer.d_model
        self.backbone = backbone
        self.input_proj = nn.Conv2d(shapes["res5"].channels, hidden_dim, kernel_size=1)
        self.position_embedding = PositionEmbeddingSine2D(hidden_dim // 2, normalize=True)
        self.transformer = transformer
        self.class_embed = MLP(hidden_dim, hidden_dim, num_classes + 1, 2)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.mask_head = mask_head
        self.criterion = criterion
        self.weight_dict = dict(weight_dict)

        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        self.mask_stride = mask_stride
        self.match_stride = match_stride
        self.multi_class = multi_class
        self.class_threshold = class_threshold
        self.match_threshold = match_threshold
        self.max_num_tracks = max_num_tracks
        self.window_size = window_size
        self.window_stride = window_stride
        self.chunk_size = chunk_size
        self.output_rle = output_rle
        self.test_store_dir = test_store_dir or None  # RLE masks' temporary file
        self.fold_frozen_bn = fold_frozen_bn
        self._folded_backbone = FoldedBackboneCache()
        self.register_pixel_normalization(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.IFC
        num_classes = num_classes_from_config(cfg)
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [lvl for lvl in ("res3", "res4", "res5") if lvl not in shapes]
        if missing:
            raise ValueError(
                f"IFC needs backbone outputs res3, res4, res5; missing {missing} "
                f"(MODEL.RESNETS.OUT_FEATURES = {list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
            )
        transformer = IFCTransformer(
            d_model=c.HIDDEN_DIM,
            nhead=c.NHEADS,
            num_encoder_layers=c.ENC_LAYERS,
            num_decoder_layers=c.DEC_LAYERS,
            num_memory_bus=c.NUM_MEMORY_BUS,
            dim_feedforward=c.DIM_FEEDFORWARD,
            dropout=c.DROPOUT,
            normalize_before=c.PRE_NORM,
        )
        mask_head = IFCMaskHead(
            hidden_dim=c.HIDDEN_DIM,
            res4_channels=shapes["res4"].channels,
            res3_channels=shapes["res3"].channels,
        )
        matcher = MaskHungarianMatcher(cost_class=c.CLASS_WEIGHT, cost_dice=c.DICE_WEIGHT)
        criterion = ClipMaskSetCriterion(
            num_classes=num_classes, matcher=matcher, eos_coef=c.NO_OBJECT_WEIGHT
        )
        base_weights = {
            "loss_ce": c.CLASS_WEIGHT,
            "loss_mask": c.MASK_WEIGHT,
            "loss_dice": c.DICE_WEIGHT,
        }
        weight_dict = dict(base_weights)
        if c.DEEP_SUPERVISION:  # auxiliary losses of decoder layers 0..L-2, same weights
            for i in range(c.DEC_LAYERS - 1):
                weight_dict.update({f"{k}_{i}": v for k, v in base_weights.items()})
        return {
            "backbone": backbone,
            "transformer": transformer,
            "mask_head": mask_head,
            "criterion": criterion,
            "weight_dict": weight_dict,
            "num_classes": num_classes,
            "num_queries": c.NUM_OBJECT_QUERIES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "deep_supervision": c.DEEP_SUPERVISION,
            "mask_stride": c.MASK_STRIDE,
            "match_stride": c.MATCH_STRIDE,
            "multi_class": c.MULTI_CLS_ON,
            "class_threshold": c.APPLY_CLS_THRES,
            "match_threshold": c.MATCH_THRESHOLD,
            "max_num_tracks": cfg.MODEL.VIS.MAX_NUM_TRACKS,
            "window_size": cfg.MODEL.VIS.TEST_WINDOW_SIZE,
            "window_stride": cfg.MODEL.VIS.TEST_WINDOW_STRIDE,
            "chunk_size": cfg.MODEL.VIS.TEST_CHUNK_SIZE,
            "output_rle": cfg.MODEL.VIS.OUTPUT_RLE,
            "test_store_dir": cfg.MODEL.VIS.TEST_STORE_DIR,
        }

    # ------------------------------------------------------------------ shared forward pieces
    def frame_features(self, frames: List[Tensor]) -> Dict[str, Tensor]:
        """Per-frame work: normalise + pad, backbone, input_proj(res5), PE, lateral adapters.

        Returns a dict of [N, ...] tensors: "src" [N, C, h32, w32], "mask" bool [N, h32, w32],
        "pos" [N, C, h32, w32], "lateral16" [N, C, h16, w16], "lateral8" [N, C, h8, w8].
        """
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std)
        # inference: FrozenBN folded into the convs (same function, faster); training: the backbone
        # itself
        backbone = (
            self._folded_backbone.get(self.backbone)
            if not self.training and self.fold_frozen_bn
            else self.backbone
        )
        feats, masks = backbone_with_masks(backbone, images)
        src = self.input_proj(feats["res5"])
        pos = self.position_embedding(masks["res5"]).to(src.dtype)
        lateral16, lateral8 = self.mask_head.project_laterals(feats["res4"], feats["res3"])
        return {
            "src": src,
            "mask": masks["res5"],
            "pos": pos,
            "lateral16": lateral16,
            "lateral8": lateral8,
        }

    def clip_forward(self, feats: Dict[str, Tensor], num_videos: int, return_intermediate: bool):
        """Transformer + heads on B clips of T frames (feats video-major, N = B*T).

        Returns class logits [L, B, Q, K+1] and mask logits [L, B, Q, T, h8, w8].
        """
        hs, memory = self.transformer(
            feats["src"],
            feats["mask"],
            self.query_embed.weight,
            feats["pos"],
            num_videos,
            return_intermediate,
        )
        class_logits = self.class_embed(hs)
        mask_logits = self.mask_head(memory, feats["lateral16"], feats["lateral8"], hs)
        return class_logits, mask_logits

    # ------------------------------------------------------------------ training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        frames, lengths = video_frames(batched_inputs)
        if len(set(lengths)) != 1:
            raise ValueError(
                f"IFC training needs the same number of frames per clip, got {lengths} for videos "
                f"{[v.get('video_id', '?') for v in batched_inputs]}"
            )
        num_videos = len(batched_inputs)
        feats = self.frame_features(frames)
        class_logits, mask_logits = self.clip_forward(feats, num_videos, self.deep_supervision)
        outputs = {"pred_logits": class_logits[-1], "pred_masks": mask_logits[-1]}
        if self.deep_supervision:
            outputs["aux_outputs"] = [
                {"pred_logits": a, "pred_masks": b}
                for a, b in zip(class_logits[:-1], mask_logits[:-1])
            ]

        targets = clip_targets_from_batch(batched_inputs, self.device)
        for t in targets:
            full = t.pop("masks")
            t["masks"] = downsample_clip_masks(full, self.mask_stride)
            t["match_masks"] = (
                t["masks"]
                if self.match_stride == self.mask_stride
                else downsample_clip_masks(full, self.match_stride)
            )

        losses = self.criterion(outputs, targets)
        logs = {k: losses.pop(k) for k in [k for k in losses if k.startswith("log_")]}
        _log_scalars(logs)
        for k in list(losses):
            if k not in self.weight_dict:
                raise KeyError(
                    f"IFC: loss {k!r} has no weight (weights: {sorted(self.weight_dict)})"
                )
            losses[k] = losses[k] * self.weight_dict[k]
        return losses

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        """One video of any length -> the output contract dict."""
        frames = input_frames(video)
        length = len(frames)
        out_size = (
            video.get("height", frames[0].shape[-2]),
            video.get("width", frames[0].shape[-1]),
        )

        cache = FrameFeatureCache(
            lambda ids: self.frame_features([frames[i] for i in ids]), self.chunk_size
        )

        def clip_fn(frame_ids: List[int]) -> ClipPrediction:
            feats = cache.get(frame_ids)
            class_logits, mask_logits = self.clip_forward(feats, 1, return_intermediate=False)
            probs = F.softmax(class_logits[-1, 0], dim=-1)  # [Q, K+1]
            keep = probs.argmax(-1) < self.num_classes  # drop queries whose best class is no-object
            return ClipPrediction(frame_ids, probs[keep], mask_logits[-1, 0][keep])

        writer = VideoMaskWriter(
            length, out_size, output_rle=self.output_rle, store_dir=self.test_store_dir
        )
        window = self.window_size if self.window_size > 0 else length
        class_probs = associate_clip_windows(
            length,
            clip_fn,
            window_size=window,
            window_stride=min(self.window_stride, window) or window,
            max_num_tracks=self.max_num_tracks,
            match_threshold=self.match_threshold,
            frame_sink=writer,
            on_window_done=cache.release_before,
        )
        masks = writer.track_masks(class_probs.shape[0])
        if class_probs.shape[0] == 0:
            class_probs = class_probs.new_zeros((0, self.num_classes + 1))
        track_idx, scores, labels = select_track_classes(
            class_probs, multi_class=self.multi_class, class_threshold=self.class_threshold
        )
        return build_video_output(out_size, scores, labels, [masks[i] for i in track_idx.tolist()])


def _log_scalars(values: Dict[str, Tensor]) -> None:
    """Put detached statistics in detectron2's event storage when a trainer is running."""
    if not values:
        return
    try:
        from detectron2.utils.events import get_event_storage

        storage = get_event_storage()
    except (AssertionError, ImportError):
        return
    storage.put_scalars(**{k[len("log_") :]: float(v) for k, v in values.items()})
