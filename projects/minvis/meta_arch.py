"""MinVIS meta-architecture: the per-frame Mask2Former baseline with query-embedding tracking.

Training: every sampled frame is an independent image for the Mask2Former detector
(`vis_zoo.modeling.mask2former`), with the frame-level Hungarian losses only (official: one frame
per video, SAMPLING_FRAME_NUM 1).

Inference (one video at a time, any length): frames go through the detector
MODEL.VIS.TEST_CHUNK_SIZE at a time (on CPU as many as fit in MODEL.VIS.TEST_CHUNK_PIXELS_CPU
pixels). Frame t's queries are aligned to frame t-1's aligned queries by Hungarian matching on
cosine distance of their (decoder-normed) embeddings (`vis_zoo.modeling.query_matching`), so query
slot q is one track through the video. Class logits are averaged over frames, the top-k (slot,
class) pairs are kept with their softmax probability as score, and each kept slot's per-frame mask
embedding is dotted with that frame's mask features to give its masks. The top slots are known only
after the last frame, so every slot's masks are rendered as soon as its frame is aligned and kept as
RLE on disk (`VideoMaskWriter`); the mask features are dropped chunk by chunk and memory does not
grow with T.
"""

from typing import Callable, Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor

from vis_zoo.modeling.backbone import input_frames, normalize_and_pad, video_frames
from vis_zoo.modeling.mask2former import (
    Mask2FormerVideoSegmenter,
    build_mask2former_criterion,
    mask2former_model_kwargs,
    video_targets,
)
from vis_zoo.modeling.mask2former.video_inference import (
    DetectorChunk,
    check_detector_pass_settings,
    frame_detector_test_kwargs,
    mask_logits_to_output,
    top_query_class_pairs,
)
from vis_zoo.modeling.postprocessing import VideoMaskWriter, build_video_output, decode_track_masks
from vis_zoo.modeling.query_matching import match_queries_to_previous_frame

__all__ = ["MinVIS"]

# Slots whose masks are rendered at once: bounds the float temporary to 25 x H x W per frame.
RENDER_SLOT_GROUP = 25


@META_ARCH_REGISTRY.register()
class MinVIS(Mask2FormerVideoSegmenter):
    """MinVIS (Huang et al., NeurIPS 2022). Training returns a weighted loss dict; inference returns
    one output dict per video: image_size, pred_scores [K], pred_labels [K], pred_masks (K x bool
    [T, H, W], or K lists of T RLE dicts with MODEL.VIS.OUTPUT_RLE)."""

    @configurable
    def __init__(
        self,
        *,
        test_topk_per_video: int = 10,
        test_chunk_size: int = 30,
        test_chunk_pixels_cpu: int = 2 * 360 * 640,
        test_interpolate_chunk_size: int = 5,
        test_feature_store: str = "auto",
        output_rle: bool = False,
        test_store_dir: str = "",
        **detector,
    ):
        """`detector`: the keyword arguments of `Mask2FormerVideoSegmenter` (backbone,
        sem_seg_head, criterion, ...)."""
        super().__init__(**detector)
        self.test_topk_per_video = test_topk_per_video
        check_detector_pass_settings(test_chunk_size, test_chunk_pixels_cpu, test_feature_store)
        self.test_chunk_size = test_chunk_size
        self.test_chunk_pixels_cpu = test_chunk_pixels_cpu
        self.test_interpolate_chunk_size = max(1, test_interpolate_chunk_size)
        self.test_feature_store = test_feature_store
        self.output_rle = output_rle
        self.test_store_dir = test_store_dir or None

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            **mask2former_model_kwargs(cfg, build_mask2former_criterion(cfg)),
            **frame_detector_test_kwargs(cfg),
        }

    # ================================================================== training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        """All frames of the batch are images; targets are the tracks present in each frame."""
        frames, lengths = video_frames(batched_inputs)
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
        frame_targets: List[dict] = []
        for video, length in zip(batched_inputs, lengths):
            frame_targets.extend(
                video_targets([video], images.tensor.shape[-2:], length, self.device)[0]
            )
        losses, _ = self.criterion(outputs, frame_targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}

    # ================================================================== inference
    @torch.no_grad()
    def track_queries(
        self,
        frames: Sequence[Tensor],
        video_id="?",
        on_frames: Optional[Callable[[DetectorChunk, Tensor], None]] = None,
    ):
        """Detector over the frames with online query alignment.

        `on_frames(chunk, mask_embeds [t, Q, C])` receives each detector pass (`DetectorChunk`:
        its first frame, mask features [t, C, h4, w4], input sizes) with its aligned per-slot mask
        embeddings as soon as the chunk is aligned; nothing of them is kept.

        Returns (mean class logits [Q, K+1] of each aligned slot, DetectedFrames without mask
        features: the padded and unpadded input size)."""
        predictor = self.sem_seg_head.predictor
        logit_sum: List[Tensor] = []
        previous: List[Tensor] = []  # the last aligned embeddings [Q, C]

        def align_chunk(chunk: DetectorChunk) -> None:
            queries, logits = chunk.frame_queries[-1], chunk.pred_logits  # [t, Q, C], [t, Q, K+1]
            start = chunk.start
            mask_embeds = []
            for t in range(queries.shape[0]):
                if previous:
                    try:
                        perm = match_queries_to_previous_frame(previous[0], queries[t])
                    except FloatingPointError as error:
                        raise FloatingPointError(
                            f"MinVIS, video {video_id}, frame {start + t}: {error}"
                        ) from None
                    cur_q, cur_logits = queries[t][perm], logits[t][perm]
                else:
                    cur_q, cur_logits = queries[t], logits[t]
                previous[:] = [cur_q]
                if logit_sum:
                    logit_sum[0] += cur_logits
                else:
                    logit_sum.append(cur_logits.clone())
                mask_embeds.append(predictor.mask_embed(cur_q))
            if on_frames is not None:
                on_frames(chunk, torch.stack(mask_embeds))

        detected = self.detect_frames(
            frames,
            feature_store=None,
            project_mask_features=self.sem_seg_head.pixel_decoder.mask_features,
            on_chunk=align_chunk,
        )
        return logit_sum[0] / len(frames), detected

    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        """Online: each frame's masks of every slot are rendered at the output size, RLE-encoded
        and written to disk as soon as its queries are aligned (the top slots are known only at
        the end); the mask features are dropped chunk by chunk. Memory does not grow with T."""
        frames = input_frames(video)
        num_frames = len(frames)
        if "height" in video and "width" in video:
            out_hw = (int(video["height"]), int(video["width"]))
        else:
            out_hw = tuple(int(v) for v in frames[0].shape[-2:])
        writer = VideoMaskWriter(num_frames, out_hw, output_rle=True, store_dir=self.test_store_dir)

        def render(chunk: DetectorChunk, mask_embeds: Tensor) -> None:
            t_chunk, num_slots, _ = mask_embeds.shape
            h4, w4 = chunk.mask_features.shape[-2:]
            every_slot = torch.ones(num_slots, dtype=torch.bool)
            group = RENDER_SLOT_GROUP
            for t in range(t_chunk):
                features = chunk.mask_features[t].flatten(1)  # [C, h4·w4]
                binary = []
                # a group of slots at a time: the padded-size float logits of all 100 slots of a
                # 360x640 frame would be ~100 MB of fresh pages on every frame
                for s in range(0, num_slots, group):
                    logits = torch.matmul(mask_embeds[t, s : s + group], features).view(
                        -1, 1, h4, w4
                    )
                    binary.append(
                        mask_logits_to_output(
                            logits,
                            padded_hw=chunk.padded_hw,
                            image_hw=chunk.image_hw,
                            output_hw=out_hw,
                        )[0][:, 0]
                    )
                writer.write_binary(chunk.start + t, torch.cat(binary), every_slot)

        mean_logits, _ = self.track_queries(frames, video.get("video_id", "?"), on_frames=render)
        top_scores, labels, slot = top_query_class_pairs(mean_logits, self.test_topk_per_video)
        slot_masks = writer.track_masks(mean_logits.shape[0])
        masks = [slot_masks[q] for q in slot.tolist()]
        if not self.output_rle:
            masks = [decode_track_masks(m) for m in masks]
        # MinVIS scores a track by its class probability alone (no mask-quality factor)
        return build_video_output(out_hw, top_scores, labels, masks)
