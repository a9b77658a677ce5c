"""VITA meta-architecture: Mask2Former per frame + the VITA module over its frame queries (Heo et
al., "VITA: Video Instance Segmentation via Object Token Association", NeurIPS 2022, Sec. 3).

Training: all frames of the B clips go through backbone and Mask2Former at once; the frame losses
use every prediction set, the last LAST_LAYER_NUM sets' frame queries feed VITA, whose video masks
are mask embeddings dotted with `vita_mask_features(F4)` of every frame.

Inference (one video at a time, any length): frames go through the detector
MODEL.VIS.TEST_CHUNK_SIZE at a time (on CPU as many as fit in MODEL.VIS.TEST_CHUNK_PIXELS_CPU
pixels); only the last layer's frame queries [T, fQ, C] and the VITA mask features [T, C, H/4, W/4]
are kept (the frame-level /4 mask predictions are never computed), the features where
MODEL.VIS.TEST_FEATURE_STORE says: in memory, or for long videos in a temporary file (on CPU) or
recomputed by a second backbone + pixel-decoder pass. One offline VITA pass over all object tokens
then gives the video queries; masks are produced MODEL.VIS.TEST_INTERPOLATE_CHUNK_SIZE frames at a
time and kept as RLE on disk.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor

from vis_zoo.modeling.backbone import input_frames, normalize_and_pad, video_frames
from vis_zoo.modeling.mask2former import (
    Mask2FormerVideoSegmenter,
    PointHungarianMatcher,
    build_mask2former_criterion,
    mask2former_model_kwargs,
    video_targets,
)
from vis_zoo.modeling.mask2former.video_inference import (
    DetectorChunk,
    DiskFeatureStore,
    MaskFeatureStore,
    check_detector_pass_settings,
    frame_detector_test_kwargs,
    render_video_masks,
    top_query_class_pairs,
)
from vis_zoo.modeling.postprocessing import build_video_output

from .criterion import VitaCriterion
from .transformer import VITAModule

__all__ = ["Vita"]


@META_ARCH_REGISTRY.register()
class Vita(Mask2FormerVideoSegmenter):
    """VITA (Heo et al., NeurIPS 2022). Training returns a weighted loss dict; inference returns one
    output dict per video: image_size, pred_scores [K], pred_labels [K], pred_masks (K x bool
    [T, H, W], or K lists of T RLE dicts with MODEL.VIS.OUTPUT_RLE)."""

    @configurable
    def __init__(
        self,
        *,
        vita_module: VITAModule,
        vita_criterion: VitaCriterion,
        num_queries: int,
        last_layer_num: int = 3,
        test_topk_per_video: int = 10,
        freeze_detector: bool = False,
        test_chunk_size: int = 18,
        test_chunk_pixels_cpu: int = 2 * 360 * 640,
        test_interpolate_chunk_size: int = 5,
        test_keep_query_ratio: float = 1.0,
        test_feature_store: str = "auto",
        test_feature_memory_mb: float = 1024.0,
        test_store_dir: str = "",
        output_rle: bool = False,
        test_stream_frames: int = 120,
        **detector,
    ):
        """`detector`: the keyword arguments of `Mask2FormerVideoSegmenter` (backbone,
        sem_seg_head, criterion, ...)."""
        super().__init__(**detector)
        self.vita_module = vita_module
        self.vita_criterion = vita_criterion
        self.num_queries = num_queries
        self.last_layer_num = last_layer_num
        self.test_topk_per_video = test_topk_per_video
        if not 0.0 < test_keep_query_ratio <= 1.0:
            raise ValueError(
                f"MODEL.VITA.TEST_KEEP_QUERY_RATIO must be in (0, 1], got {test_keep_query_ratio}"
            )
        self.test_keep_query_ratio = test_keep_query_ratio
        check_detector_pass_settings(test_chunk_size, test_chunk_pixels_cpu, test_feature_store)
        self.test_feature_store = test_feature_store
        self.test_feature_memory_mb = test_feature_memory_mb
        self.test_store_dir = test_store_dir or None
        if test_stream_frames < 1:
            raise ValueError(
                f"MODEL.VITA.TEST_STREAM_FRAMES must be >= 1, got {test_stream_frames}"
            )
        self.test_stream_frames = test_stream_frames
        self.test_chunk_size = test_chunk_size
        self.test_chunk_pixels_cpu = test_chunk_pixels_cpu
        self.test_interpolate_chunk_size = max(1, test_interpolate_chunk_size)
        self.output_rle = output_rle
        self.freeze_detector = freeze_detector
        if freeze_detector:
            # Train only the VITA module on a fixed frame-level detector
            # (MODEL.VITA.FREEZE_DETECTOR).
            for name, p in self.named_parameters():
                if not name.startswith("vita_module."):
                    p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        mf, v, vis = cfg.MODEL.MASK_FORMER, cfg.MODEL.VITA, cfg.MODEL.VIS
        criterion = build_mask2former_criterion(cfg, num_indices_to_return=v.LAST_LAYER_NUM)
        detector = mask2former_model_kwargs(cfg, criterion)
        vita_module = VITAModule(cfg)
        vita_matcher = PointHungarianMatcher(
            cost_class=mf.CLASS_WEIGHT,
            cost_mask=mf.MASK_WEIGHT,
            cost_dice=mf.DICE_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS,
        )
        vita_weights = {
            "loss_vita_ce": mf.CLASS_WEIGHT,
            "loss_vita_mask": mf.MASK_WEIGHT,
            "loss_vita_dice": mf.DICE_WEIGHT,
        }
        if v.DEEP_SUPERVISION:
            for i in range(v.DEC_LAYERS - 1):
                vita_weights.update(
                    {
                        f"{k}_{i}": vita_weights[k]
                        for k in ("loss_vita_ce", "loss_vita_mask", "loss_vita_dice")
                    }
                )
        if v.SIM_WEIGHT > 0.0:
            vita_weights["loss_vita_sim"] = v.SIM_WEIGHT
        vita_criterion = VitaCriterion(
            num_classes=detector["num_classes"],
            matcher=vita_matcher,
            weight_dict=vita_weights,
            eos_coef=v.NO_OBJECT_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS,
            oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
            sim_weight=v.SIM_WEIGHT,
            sim_use_clip=v.SIM_USE_CLIP,
        )
        return {
            **detector,
            "vita_module": vita_module,
            "vita_criterion": vita_criterion,
            "num_queries": v.NUM_OBJECT_QUERIES,
            "last_layer_num": v.LAST_LAYER_NUM,
            **frame_detector_test_kwargs(cfg),
            "freeze_detector": v.FREEZE_DETECTOR,
            "test_keep_query_ratio": v.TEST_KEEP_QUERY_RATIO,
            "test_feature_memory_mb": vis.TEST_FEATURE_MEMORY_MB,
            "test_stream_frames": v.TEST_STREAM_FRAMES,
        }

    # ================================================================== training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        frames, lengths = video_frames(batched_inputs)
        if len(set(lengths)) != 1:
            raise ValueError(
                f"VITA training needs clips of equal length, got {lengths} frames "
                f"(videos {[v.get('video_id') for v in batched_inputs]})"
            )
        num_frames, num_videos = lengths[0], len(batched_inputs)
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)

        # A frozen detector needs no graph: run it without autograd (same values, less memory).
        with torch.set_grad_enabled(not self.freeze_detector):
            features = self.backbone(images.tensor)
            outputs = self.sem_seg_head(features, num_frame_query_layers=self.last_layer_num)
        mask_features = self.vita_module.vita_mask_features(outputs["pixel_features"])
        mask_features = mask_features.view(num_videos, num_frames, *mask_features.shape[-3:])

        frame_targets, clip_targets = self.prepare_targets(
            batched_inputs, images.tensor.shape[-2:], num_frames
        )
        losses, frame_indices = self.criterion(outputs, frame_targets)
        losses = {
            k: v * self.criterion.weight_dict[k]
            for k, v in losses.items()
            if k in self.criterion.weight_dict
        }

        vita_outputs = self.vita_module(outputs["frame_queries"], num_frames)
        vita_outputs["pred_masks"] = torch.einsum(
            "lbqc,btchw->lbqthw", vita_outputs["pred_mask_embed"], mask_features
        )
        for aux in vita_outputs["aux_outputs"]:
            aux["pred_masks"] = torch.einsum(
                "lbqc,btchw->lbqthw", aux["pred_mask_embed"], mask_features
            )
        vita_losses = self.vita_criterion(vita_outputs, clip_targets, frame_targets, frame_indices)
        weights = self.vita_criterion.weight_dict
        losses.update({k: v * weights[k] for k, v in vita_losses.items() if k in weights})
        return losses

    def prepare_targets(
        self, batched_inputs: Sequence[dict], padded_hw: Tuple[int, int], num_frames: int
    ):
        """Mapper instances -> (frame targets: B*T dicts, clip targets: B dicts); see
        `vis_zoo.modeling.mask2former.video_targets`."""
        return video_targets(batched_inputs, padded_hw, num_frames, self.device)

    # ================================================================== inference
    def _keep_queries(
        self, frame_queries: Tensor, logits: Tensor
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Token pruning: the top ratio of each frame's queries by foreground probability.

        frame_queries [t, fQ, C], logits [t, fQ, K+1] -> ([t, k, C], index [t, k] or None)."""
        if self.test_keep_query_ratio >= 1.0:
            return frame_queries, None
        fq = frame_queries.shape[1]
        k = max(1, int(math.ceil(fq * self.test_keep_query_ratio)))
        no_object = logits.softmax(-1)[..., -1]
        index = no_object.topk(k, dim=1, largest=False).indices.sort(dim=1).values
        return torch.gather(
            frame_queries, 1, index[..., None].expand(-1, -1, frame_queries.shape[-1])
        ), index

    @torch.no_grad()
    def encode_frames(
        self, frames: Sequence[Tensor], token_store: Optional[MaskFeatureStore] = None
    ):
        """Detector over all frames, in chunks. Returns (frame_queries [T, fQ', C], or None when
        they went to `token_store`; query_index [T, fQ'] or None; DetectedFrames: the mask
        features [T, C, h4, w4] in the MODEL.VIS.TEST_FEATURE_STORE store, padded and unpadded
        size)."""
        queries, indices = [], []

        def keep_last_layer_queries(chunk: DetectorChunk) -> None:
            fq, index = self._keep_queries(chunk.frame_queries[-1], chunk.pred_logits)
            if token_store is None:
                queries.append(fq)
            else:
                token_store.add(chunk.start, fq)
            if index is not None:
                indices.append(index)

        detected = self.detect_frames(
            frames,
            feature_store=self.test_feature_store,
            feature_memory_mb=self.test_feature_memory_mb,
            store_dir=self.test_store_dir,
            project_mask_features=self.vita_module.vita_mask_features,
            on_chunk=keep_last_layer_queries,
        )
        query_index = torch.cat(indices) if indices else None
        return (torch.cat(queries) if queries else None), query_index, detected

    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        """Up to MODEL.VITA.TEST_STREAM_FRAMES frames, one VITA pass over all object tokens (the
        official computation); longer videos keep the tokens in temporary files and run the VITA
        module block by block (`VITAModule.infer_streamed`: the same result up to float rounding,
        memory independent of the length)."""
        frames = input_frames(video)
        num_frames = len(frames)
        if num_frames <= self.test_stream_frames:
            frame_queries, query_index, detected = self.encode_frames(frames)
            vita_out = self.vita_module(
                frame_queries[None], num_frames=num_frames, query_index=query_index
            )
            mask_cls = vita_out["pred_logits"][-1, 0]  # [cQ, K+1]
            mask_embed = vita_out["pred_mask_embed"][-1, 0]  # [cQ, C]
            del vita_out, frame_queries
        else:
            tokens = DiskFeatureStore(num_frames, self.test_store_dir)
            _, query_index, detected = self.encode_frames(frames, token_store=tokens)
            mask_cls, mask_embed = self.vita_module.infer_streamed(
                tokens.read,
                num_frames,
                DiskFeatureStore(num_frames, self.test_store_dir),
                query_index=query_index,
                block_frames=self.test_stream_frames,
            )
            tokens.close()
        out_h = int(video.get("height", detected.image_hw[0]))
        out_w = int(video.get("width", detected.image_hw[1]))

        top_scores, labels, query_idx = top_query_class_pairs(mask_cls, self.test_topk_per_video)
        masks, mask_scores = render_video_masks(
            mask_embed[query_idx],
            detected.mask_features,
            padded_hw=detected.padded_hw,
            image_hw=detected.image_hw,
            output_hw=(out_h, out_w),
            frames_per_step=self.test_interpolate_chunk_size,
            output_rle=self.output_rle,
            device=self.device,
            store_dir=self.test_store_dir,
        )
        final_scores = top_scores * mask_scores
        return build_video_output((out_h, out_w), final_scores, labels, masks)
