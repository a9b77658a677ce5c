"""Mask2Former-VIS meta-architecture (`VideoMaskFormer`, the official name): the Mask2Former
detector whose 100 queries are clip-level (`VideoMultiScaleMaskedTransformerDecoder`).

Training: the backbone and pixel decoder run on every frame; the decoder's queries attend to the
features of all T = INPUT.SAMPLING_FRAME_NUM frames of their clip and predict one class and T masks
each; Hungarian matching and losses are over the whole clip (the shared Mask2Former criterion on
clip masks, every frame mask one term of the mask losses, as the official `VideoSetCriterion`).

Inference (one video at a time, any length): the per-frame work (backbone, pixel decoder, the mask
features at /4 and at each decoder level) runs MODEL.VIS.TEST_CHUNK_SIZE frames at a time (on CPU as
many as fit in MODEL.VIS.TEST_CHUNK_PIXELS_CPU pixels) and is kept only while a window needs it. A
video of at most MODEL.VIS.TEST_WINDOW_SIZE frames (0: any length) is one clip, as the official code
runs every video; a longer one is cut into windows every MODEL.VIS.TEST_WINDOW_STRIDE frames whose
predictions the shared soft-IoU association joins into tracks (`vis_zoo.modeling.clip_association`).
In each window the decoder computes its attention masks at each level's size and no /4 mask of every
query; the queries of the window's top-k (query, class) pairs give its instances, their masks are
their mask embeddings dotted with the frames' /4 mask features. The output is the top-k (track,
class) pairs by class probability, as the official top-10 (query, class) selection.
"""

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor

from vis_zoo.modeling.backbone import (
    FrameFeatureCache,
    input_frames,
    normalize_and_pad,
    video_frames,
)
from vis_zoo.modeling.clip_association import ClipPrediction, associate_clip_windows
from vis_zoo.modeling.mask2former import (
    Mask2FormerVideoSegmenter,
    VideoMultiScaleMaskedTransformerDecoder,
    build_mask2former_criterion,
    mask2former_model_kwargs,
    video_targets,
)
from vis_zoo.modeling.mask2former.video_inference import (
    frames_per_detector_pass,
    top_query_class_pairs,
)
from vis_zoo.modeling.postprocessing import VideoMaskWriter, build_video_output

__all__ = ["VideoMaskFormer"]


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(Mask2FormerVideoSegmenter):
    """Mask2Former-VIS (Cheng et al., arXiv 2112.10764). Training returns the weighted loss dict;
    inference one output dict per video: image_size, pred_scores [k], pred_labels [k], pred_masks
    (k x bool [T, H, W], or k lists of T RLE dicts with MODEL.VIS.OUTPUT_RLE)."""

    @configurable
    def __init__(
        self,
        *,
        test_topk_per_video: int = 10,
        test_window_size: int = 36,
        test_window_stride: int = 18,
        test_chunk_size: int = 36,
        test_chunk_pixels_cpu: int = 2 * 360 * 640,
        max_num_tracks: int = 100,
        output_rle: bool = False,
        test_store_dir: str = "",
        **detector,
    ):
        """`detector`: the keyword arguments of `Mask2FormerVideoSegmenter` (backbone,
        sem_seg_head, criterion, ...)."""
        super().__init__(**detector)
        if not isinstance(self.sem_seg_head.predictor, VideoMultiScaleMaskedTransformerDecoder):
            raise ValueError(
                "Mask2Former-VIS needs MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME "
                "'VideoMultiScaleMaskedTransformerDecoder', got "
                f"{type(self.sem_seg_head.predictor).__name__}"
            )
        if test_window_size < 0 or test_window_stride < 1:
            raise ValueError(
                f"MODEL.VIS.TEST_WINDOW_SIZE must be >= 0 (0: the whole video) and "
                f"MODEL.VIS.TEST_WINDOW_STRIDE >= 1, got {test_window_size} and "
                f"{test_window_stride}"
            )
        if test_chunk_size < 1 or test_chunk_pixels_cpu < 1:
            raise ValueError(
                f"MODEL.VIS.TEST_CHUNK_SIZE and MODEL.VIS.TEST_CHUNK_PIXELS_CPU must be >= 1, got "
                f"{test_chunk_size} and {test_chunk_pixels_cpu}"
            )
        self.test_topk_per_video = test_topk_per_video
        self.test_window_size = test_window_size
        self.test_window_stride = test_window_stride
        self.test_chunk_size = test_chunk_size
        self.test_chunk_pixels_cpu = test_chunk_pixels_cpu
        self.max_num_tracks = max_num_tracks
        self.output_rle = output_rle
        self.test_store_dir = test_store_dir or None  # the RLE output masks' temporary file

    @classmethod
    def from_config(cls, cfg) -> dict:
        vis = cfg.MODEL.VIS
        criterion = build_mask2former_criterion(cfg, per_frame_mask_losses=True)
        return dict(
            mask2former_model_kwargs(cfg, criterion),
            test_topk_per_video=min(cfg.TEST.DETECTIONS_PER_IMAGE, vis.MAX_NUM_TRACKS),
            test_window_size=vis.TEST_WINDOW_SIZE,
            test_window_stride=vis.TEST_WINDOW_STRIDE,
            test_chunk_size=vis.TEST_CHUNK_SIZE,
            test_chunk_pixels_cpu=vis.TEST_CHUNK_PIXELS_CPU,
            max_num_tracks=vis.MAX_NUM_TRACKS,
            output_rle=vis.OUTPUT_RLE,
            test_store_dir=vis.TEST_STORE_DIR,
        )

    # ================================================================== training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        """B clips of T frames -> the weighted losses of the clip predictions (and the aux sets)."""
        frames, lengths = video_frames(batched_inputs)
        if len(set(lengths)) != 1:
            raise ValueError(
                f"Mask2Former-VIS training needs the same number of frames per clip, got {lengths} "
                f"for videos {[v.get('video_id', '?') for v in batched_inputs]}"
            )
        num_frames = lengths[0]
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)
        decoded = self.sem_seg_head.pixel_decoder(
            self.backbone(images.tensor), compute_mask_features=True
        )

        def as_clips(maps: Tensor) -> Tensor:  # [B*T, C, h, w] -> [B, T, C, h, w]
            return maps.view(-1, num_frames, *maps.shape[1:])

        outputs = self.sem_seg_head.predictor(
            [as_clips(f) for f in decoded["multi_scale_features"]],
            as_clips(decoded["mask_features"]),
        )
        _, clip_targets = video_targets(
            batched_inputs, images.tensor.shape[-2:], num_frames, self.device
        )
        losses, _ = self.criterion(outputs, clip_targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}

    # ================================================================== inference
    @torch.no_grad()
    def frame_features(self, frames: Sequence[Tensor], sizes: dict) -> Dict[str, Tensor]:
        """Per-frame work at test time (FrameFeatureCache's compute function).

        Returns "features{l}" [t, C, h_l, w_l] (the decoder's levels, coarsest first),
        "level_mask_features{l}" [t, mask_dim, h_l, w_l], "mask_features" [t, mask_dim, H/4, W/4];
        records the padded and unpadded input sizes in `sizes` ("padded_hw", "image_hw").
        """
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)
        # channels-last frames: the same convolutions, faster on CPU (oneDNN) and tensor-core GPUs
        features = self.backbone(images.tensor.contiguous(memory_format=torch.channels_last))
        decoded = self.sem_seg_head.decode_pixels_for_queries(features)
        out = {
            "mask_features": self.sem_seg_head.pixel_decoder.mask_features(
                decoded["pixel_features"]
            )
        }
        for level, (feat, masks) in enumerate(
            zip(decoded["multi_scale_features"], decoded["level_mask_features"])
        ):
            out[f"features{level}"], out[f"level_mask_features{level}"] = feat, masks
        padded_hw, image_hw = tuple(images.tensor.shape[-2:]), tuple(images.image_sizes[0])
        if sizes.setdefault("padded_hw", padded_hw) != padded_hw:
            raise ValueError(
                f"video frames must share one size: padded input {padded_hw} after "
                f"{sizes['padded_hw']}"
            )
        sizes.setdefault("image_hw", image_hw)
        return out

    @torch.no_grad()
    def predict_clip(self, feats: Dict[str, Tensor], frame_ids: List[int]) -> ClipPrediction:
        """One window: the clip decoder on its frames' cached features -> the instances of its top-k
        (query, class) pairs (each query once): class probabilities [n, K+1], /4 mask logits
        [n, t, h4, w4] on the padded canvas."""
        predictor = self.sem_seg_head.predictor
        levels = range(predictor.num_feature_levels)
        out = predictor.forward_queries(
            [feats[f"features{level}"][None] for level in levels],
            [feats[f"level_mask_features{level}"][None] for level in levels],
        )
        logits = out["pred_logits"][0].float()  # [Q, K+1]
        _, _, query_idx = top_query_class_pairs(logits, self.test_topk_per_video)
        kept = torch.unique(query_idx)
        mask_embed = predictor.mask_embed(out["frame_queries"][-1, 0, kept])  # [n, C]
        mask_logits = torch.einsum("nc,tchw->nthw", mask_embed, feats["mask_features"])
        return ClipPrediction(frame_ids, logits[kept].softmax(-1), mask_logits)

    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        frames = input_frames(video)
        length = len(frames)
        out_hw = (
            int(video.get("height", frames[0].shape[-2])),
            int(video.get("width", frames[0].shape[-1])),
        )
        sizes: dict = {}
        per_pass = frames_per_detector_pass(
            tuple(frames[0].shape[-2:]),
            self.device,
            self.test_chunk_size,
            self.test_chunk_pixels_cpu,
        )
        cache = FrameFeatureCache(
            lambda ids: self.frame_features([frames[i] for i in ids], sizes), per_pass
        )
        writer = VideoMaskWriter(
            length, out_hw, output_rle=self.output_rle, store_dir=self.test_store_dir
        )

        def write_frame(frame: int, logits: Tensor, valid: Tensor) -> None:
            # as the official: /4 logits -> padded input size -> cropped to the image -> output size
            up = F.interpolate(
                logits[None], size=sizes["padded_hw"], mode="bilinear", align_corners=False
            )[0]
            writer(frame, up[:, : sizes["image_hw"][0], : sizes["image_hw"][1]], valid)

        window = self.test_window_size if 0 < self.test_window_size < length else length
        class_probs = associate_clip_windows(
            length,
            lambda ids: self.predict_clip(cache.get(ids), ids),
            window_size=window,
            window_stride=min(self.test_window_stride, window),
            max_num_tracks=self.max_num_tracks,
            frame_sink=write_frame,
            on_window_done=cache.release_before,
        )
        masks = writer.track_masks(class_probs.shape[0])
        # the top-k (track, class) pairs by mean class probability (a track may carry two classes)
        foreground = class_probs[:, :-1]
        scores, flat_idx = foreground.flatten().topk(
            min(self.test_topk_per_video, foreground.numel())
        )
        labels, track_idx = flat_idx % self.num_classes, flat_idx // self.num_classes
        return build_video_output(out_hw, scores, labels, [masks[i] for i in track_idx.tolist()])
