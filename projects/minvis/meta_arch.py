"""MinVIS meta-architecture: the per-frame Mask2Former baseline with query-embedding tracking.

Training: every sampled frame is an independent image for the Mask2Former detector
(`vis_zoo.modeling.mask2former`), with the frame-level Hungarian losses only (official: one frame per
video, SAMPLING_FRAME_NUM 1).

Inference (one video at a time, any length): frames go through the detector MODEL.VIS.TEST_CHUNK_SIZE
at a time (on CPU as many as fit in MODEL.VIS.TEST_CHUNK_PIXELS_CPU pixels). Frame t's queries are
aligned to frame t-1's aligned queries by Hungarian matching on cosine distance of their
(decoder-normed) embeddings (`vis_zoo.modeling.query_matching`), so query slot q is one track
through the video. Class logits are averaged over frames, the top-k (slot, class) pairs are kept
with their softmax probability as score, and each kept slot's per-frame mask embedding is dotted with
that frame's mask features (kept at /4, as VITA's) to give its masks.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling.backbone import input_frames, normalize_and_pad, video_frames
from vis_zoo.modeling.mask2former import (Mask2FormerCriterion, Mask2FormerHead, build_mask2former_criterion,
                                          video_targets)
from vis_zoo.modeling.mask2former.video_inference import (check_detector_pass_settings, render_video_masks,
                                                          run_frame_detector, top_query_class_pairs)
from vis_zoo.modeling.meta_arch import VideoInstanceSegmenter
from vis_zoo.modeling.postprocessing import build_video_output
from vis_zoo.modeling.query_matching import match_queries_to_previous_frame

__all__ = ["MinVIS"]


@META_ARCH_REGISTRY.register()
class MinVIS(VideoInstanceSegmenter):
    """MinVIS (Huang et al., NeurIPS 2022). Training returns a weighted loss dict; inference returns one
    output dict per video: image_size, pred_scores [K], pred_labels [K], pred_masks (K x bool
    [T, H, W], or K lists of T RLE dicts with MODEL.VIS.OUTPUT_RLE)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, sem_seg_head: Mask2FormerHead, criterion: Mask2FormerCriterion,
                 num_classes: int, size_divisibility: int, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 test_topk_per_video: int = 10, test_chunk_size: int = 30,
                 test_chunk_pixels_cpu: int = 2 * 360 * 640, test_interpolate_chunk_size: int = 5,
                 test_feature_store: str = "auto", output_rle: bool = False):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = num_classes
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.register_pixel_normalization(pixel_mean, pixel_std)
        self.test_topk_per_video = test_topk_per_video
        check_detector_pass_settings(test_chunk_size, test_chunk_pixels_cpu, test_feature_store)
        self.test_chunk_size = test_chunk_size
        self.test_chunk_pixels_cpu = test_chunk_pixels_cpu
        self.test_interpolate_chunk_size = max(1, test_interpolate_chunk_size)
        self.test_feature_store = test_feature_store
        self.output_rle = output_rle

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        vis = cfg.MODEL.VIS
        return {
            "backbone": backbone,
            "sem_seg_head": Mask2FormerHead(cfg, backbone.output_shape()),
            "criterion": build_mask2former_criterion(cfg),
            "num_classes": num_classes_from_config(cfg),
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "test_topk_per_video": min(cfg.TEST.DETECTIONS_PER_IMAGE, cfg.MODEL.VIS.MAX_NUM_TRACKS),
            "test_chunk_size": vis.TEST_CHUNK_SIZE,
            "test_chunk_pixels_cpu": vis.TEST_CHUNK_PIXELS_CPU,
            "test_interpolate_chunk_size": vis.TEST_INTERPOLATE_CHUNK_SIZE,
            "test_feature_store": vis.TEST_FEATURE_STORE,
            "output_rle": cfg.MODEL.VIS.OUTPUT_RLE,
        }

    # ================================================================== training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        """All frames of the batch are images; targets are the tracks present in each frame."""
        frames, lengths = video_frames(batched_inputs)
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
        frame_targets: List[dict] = []
        for video, length in zip(batched_inputs, lengths):
            frame_targets.extend(video_targets([video], images.tensor.shape[-2:], length, self.device)[0])
        losses, _ = self.criterion(outputs, frame_targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}

    # ================================================================== inference
    @torch.no_grad()
    def track_queries(self, frames: Sequence[Tensor], video_id="?"):
        """Detector over the frames with online query alignment.

        Returns (mean class logits [Q, K+1] of each aligned slot, mask embeddings [T, Q, C] of each
        slot in each frame, DetectedFrames with the mask features [T, C, h4, w4])."""
        predictor = self.sem_seg_head.predictor
        logit_sum: List[Tensor] = []
        mask_embeds: List[Tensor] = []
        previous: List[Tensor] = []  # the last aligned embeddings [Q, C]

        def align_chunk(start: int, out: Dict[str, Tensor]) -> None:
            queries, logits = out["frame_queries"][-1], out["pred_logits"]  # [t, Q, C], [t, Q, K+1]
            for t in range(queries.shape[0]):
                if previous:
                    try:
                        perm = match_queries_to_previous_frame(previous[0], queries[t])
                    except FloatingPointError as error:
                        raise FloatingPointError(f"MinVIS, video {video_id}, frame {start + t}: {error}") from None
                    cur_q, cur_logits = queries[t][perm], logits[t][perm]
                else:
                    cur_q, cur_logits = queries[t], logits[t]
                previous[:] = [cur_q]
                if logit_sum:
                    logit_sum[0] += cur_logits
                else:
                    logit_sum.append(cur_logits.clone())
                mask_embeds.append(predictor.mask_embed(cur_q))

        detected = run_frame_detector(
            frames, backbone=self.backbone, head=self.sem_seg_head, pixel_mean=self.pixel_mean,
            pixel_std=self.pixel_std, size_divisibility=self.size_divisibility,
            chunk_size=self.test_chunk_size, cpu_pixels_per_pass=self.test_chunk_pixels_cpu,
            feature_store=self.test_feature_store,
            project_mask_features=self.sem_seg_head.pixel_decoder.mask_features, on_chunk=align_chunk)
        return logit_sum[0] / len(frames), torch.stack(mask_embeds), detected

    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        frames = input_frames(video)
        mean_logits, mask_embeds, detected = self.track_queries(frames, video.get("video_id", "?"))
        out_h = int(video.get("height", detected.image_hw[0]))
        out_w = int(video.get("width", detected.image_hw[1]))
        top_scores, labels, slot = top_query_class_pairs(mean_logits, self.test_topk_per_video)
        masks, _ = render_video_masks(
            mask_embeds[:, slot], detected.mask_features, padded_hw=detected.padded_hw,
            image_hw=detected.image_hw, output_hw=(out_h, out_w), frames_per_step=self.test_interpolate_chunk_size,
            output_rle=self.output_rle, device=self.device)
        # MinVIS scores a track by its class probability alone (no mask-quality factor)
        return build_video_output((out_h, out_w), top_scores, labels, masks)
