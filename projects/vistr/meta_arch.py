"""VisTR as a detectron2 meta-architecture.

A clip of T frames goes through the backbone frame by frame; C5 is projected to `hidden_dim`, given
the 3-D (t, y, x) sine encoding, and all T·h·w tokens go through one encoder. The decoder has T·N
queries, frame-major (query t·N + i is slot i at frame t; slot i is one track across the clip).
Class and box heads run on every decoder layer; the mask head runs on the last one: per-frame
attention maps -> small FPN with a deformable conv -> 3-D conv over each slot's T frames.

Differences from the official code (which handles one 36-frame clip per GPU):
  * any batch size and a single process (the mask path is batched over videos and frames);
  * in training the mask head runs only on the matched slots (the only masks the losses read; the
    same losses and gradients as the official all-slot head, at a fraction of the cost);
  * videos of any length at test time: shorter ones are tiled cyclically to T frames (as the
    official script does) and cut back; longer ones are cut into windows of T frames with overlap
    (stride MODEL.VIS.TEST_WINDOW_STRIDE) whose tracks are joined by the shared association;
  * backbone, lateral adapters and input projection run per frame in chunks (a frame seen by two
    windows is computed once), and the mask head in chunks of frames, so memory is bounded.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import BitMasks
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling.backbone import (
    FrameFeatureCache,
    backbone_with_masks,
    input_frames,
    normalize_and_pad,
    video_frames,
)
from vis_zoo.modeling.clip_association import ClipPrediction, associate_clip_windows
from vis_zoo.modeling.pointwise import PointwiseConv2d
from vis_zoo.modeling.meta_arch import VideoInstanceSegmenter
from vis_zoo.modeling.postprocessing import (
    VideoMaskWriter,
    build_video_output,
    empty_video_output,
    track_has_pixels,
)
from vis_zoo.modeling.targets import clip_targets_from_batch
from vis_zoo.modeling.transformer_layers import MLP

from .criterion import VisTRCriterion
from .mask_head import MaskHeadSmallConv, MHAttentionMap, build_instance_fusion_head
from .matcher import VisTRSequenceMatcher
from .position_encoding import PositionEmbeddingSine3D
from .transformer import VisTRTransformer

logger = logging.getLogger(__name__)

__all__ = ["VisTR"]


@META_ARCH_REGISTRY.register()
class VisTR(VideoInstanceSegmenter):
    """VisTR (Wang et al., CVPR 2021) on the `VideoInstanceSegmenter` interface."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        transformer: VisTRTransformer,
        criterion: Optional[nn.Module],
        num_classes: int,
        num_frames: int,
        num_slots: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        aux_loss: bool = True,
        mask_threshold: float = 0.5,
        frame_score_threshold: float = 0.001,
        test_chunk_size: int = 36,
        test_window_stride: int = 18,
        test_mask_head_chunk: int = 6,
        output_rle: bool = False,
        test_store_dir: str = "",
        max_num_tracks: int = 100,
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        mask_prior_prob: float = 0.0,
        attention_map_init_gain: float = 1.0,
    ):
        """
        Args:
            backbone: detectron2 backbone giving `in_features` (strides 4, 8, 16, 32).
            transformer: the encoder/decoder (its d_model is the hidden width C).
            criterion: loss module (None for inference-only models).
            num_classes: K; the class head has K + 2 logits (see config.py).
            num_frames: clip length T; num_slots: instance slots N per frame (T·N queries).
            pixel_mean, pixel_std: per-channel normalisation of the 0-255 input frames.
            aux_loss: class/box outputs of every decoder layer (losses on layers 0..L-2).
            mask_threshold: on mask probabilities; frame_score_threshold: a track's frame whose
                score is below it gets no mask (the official 0.001).
            test_chunk_size: frames per backbone pass at test time.
            test_window_stride: stride between the T-frame windows of a long video.
            test_mask_head_chunk: frames per mask-head pass at test time.
            output_rle: return per-frame RLE (in a temporary file) instead of bool tensors.
            test_store_dir: folder of that file (empty: the system temporary folder).
            max_num_tracks: cap on tracks returned per video.
            mask_prior_prob: initial foreground probability of the mask logits (0 = the official
                default init); see `build_instance_fusion_head`.
            attention_map_init_gain: factor on the initial `mask_head.lay1` weights that read the
                attention maps (1 = the official default init); see config.py.
        """
        super().__init__()
        hidden_dim, nheads = transformer.d_model, transformer.nhead
        if hidden_dim % 48 != 0:
            raise ValueError(
                "VisTR: MODEL.VISTR.HIDDEN_DIM must be a multiple of 48 (3 position axes of "
                "sin/cos pairs, "
                f"and the mask head's widths hidden/2 ... hidden/16); got {hidden_dim}"
            )
        if not 1 <= test_window_stride <= num_frames:
            raise ValueError(
                f"VisTR: MODEL.VIS.TEST_WINDOW_STRIDE must be in [1, NUM_FRAMES={num_frames}], got "
                f"{test_window_stride}"
            )
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"VisTR: backbone lacks features {missing} (has {sorted(shapes)}); set "
                "MODEL.RESNETS.OUT_FEATURES to ['res2', 'res3', 'res4', 'res5']"
            )
        self.backbone = backbone
        self.in_features = list(in_features)
        c2, c3, c4, c5 = (shapes[f].channels for f in self.in_features)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.num_slots = num_slots
        self.aux_loss = aux_loss

        self.input_proj = PointwiseConv2d(c5, hidden_dim)
        self.position_encoding = PositionEmbeddingSine3D(hidden_dim // 3)
        self.transformer = transformer
        self.class_embed = nn.Linear(hidden_dim, num_classes + 2)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_frames * num_slots, hidden_dim)
        self.bbox_attention = MHAttentionMap(hidden_dim, hidden_dim, nheads)
        self.mask_head = MaskHeadSmallConv(hidden_dim + nheads, [c4, c3, c2], hidden_dim)
        if attention_map_init_gain != 1.0:
            # input channels [hidden_dim:] of lay1 are the `nheads` attention maps (see
            # MaskHeadSmallConv)
            with torch.no_grad():
                self.mask_head.lay1.weight[:, hidden_dim:] *= attention_map_init_gain
        self.insmask_head = build_instance_fusion_head(self.mask_head.out_channels, mask_prior_prob)
        self.criterion = criterion

        self.mask_threshold = mask_threshold
        self.frame_score_threshold = frame_score_threshold
        self.test_chunk_size = test_chunk_size
        self.test_window_stride = test_window_stride
        self.test_mask_head_chunk = max(1, test_mask_head_chunk)
        self.output_rle = output_rle
        self.test_store_dir = test_store_dir or None  # RLE masks' temporary file
        self.max_num_tracks = max_num_tracks
        self.register_pixel_normalization(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        vcfg = cfg.MODEL.VISTR
        num_classes = num_classes_from_config(cfg)
        if cfg.MODEL.VIS.TEST_WINDOW_SIZE != vcfg.NUM_FRAMES:
            raise ValueError(
                f"VisTR: MODEL.VIS.TEST_WINDOW_SIZE ({cfg.MODEL.VIS.TEST_WINDOW_SIZE}) must equal "
                f"MODEL.VISTR.NUM_FRAMES ({vcfg.NUM_FRAMES}): the model has one query per frame of "
                "its clip"
            )
        transformer = VisTRTransformer(
            d_model=vcfg.HIDDEN_DIM,
            nhead=vcfg.NHEADS,
            num_encoder_layers=vcfg.ENC_LAYERS,
            num_decoder_layers=vcfg.DEC_LAYERS,
            dim_feedforward=vcfg.DIM_FEEDFORWARD,
            dropout=vcfg.DROPOUT,
            normalize_before=vcfg.PRE_NORM,
        )
        matcher = VisTRSequenceMatcher(
            num_frames=vcfg.NUM_FRAMES,
            num_slots=vcfg.NUM_SLOTS,
            cost_class=vcfg.COST_CLASS,
            cost_bbox=vcfg.COST_BBOX,
            cost_iou=vcfg.COST_IOU,
        )
        weight_dict = {
            "loss_ce": vcfg.CLASS_WEIGHT,
            "loss_bbox": vcfg.BBOX_WEIGHT,
            "loss_giou": vcfg.GIOU_WEIGHT,
            "loss_mask": vcfg.MASK_WEIGHT,
            "loss_dice": vcfg.DICE_WEIGHT,
        }
        criterion = VisTRCriterion(
            num_classes=num_classes,
            matcher=matcher,
            weight_dict=weight_dict,
            eos_coef=vcfg.NO_OBJECT_WEIGHT,
            focal_alpha=vcfg.FOCAL_ALPHA,
            focal_gamma=vcfg.FOCAL_GAMMA,
        )
        return {
            "backbone": build_backbone(cfg),
            "transformer": transformer,
            "criterion": criterion,
            "num_classes": num_classes,
            "num_frames": vcfg.NUM_FRAMES,
            "num_slots": vcfg.NUM_SLOTS,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "aux_loss": vcfg.AUX_LOSS,
            "mask_threshold": vcfg.MASK_THRESHOLD,
            "frame_score_threshold": vcfg.FRAME_SCORE_THRESHOLD,
            "test_chunk_size": cfg.MODEL.VIS.TEST_CHUNK_SIZE,
            "test_window_stride": cfg.MODEL.VIS.TEST_WINDOW_STRIDE,
            "test_mask_head_chunk": vcfg.TEST_MASK_HEAD_CHUNK,
            "output_rle": cfg.MODEL.VIS.OUTPUT_RLE,
            "test_store_dir": cfg.MODEL.VIS.TEST_STORE_DIR,
            "max_num_tracks": cfg.MODEL.VIS.MAX_NUM_TRACKS,
            "mask_prior_prob": vcfg.MASK_PRIOR_PROB,
            "attention_map_init_gain": vcfg.ATTENTION_MAP_INIT_GAIN,
        }

    def adapt_checkpoint_state_dict(self, state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Inflate a one-frame (T = 1) checkpoint's queries to this model's T frames.

        A T = 1 VisTR is DETR with VisTR's mask head; trained on single frames it initialises a
        T-frame model (the synthetic recipe's stage 1, as the official model starts from image
        DETR). Its `query_embed.weight` [N, C] becomes [T·N, C] with slot i's query copied to every
        frame (frame-major rows t·N + i). Every other tensor, and a checkpoint already of T·N rows,
        is returned unchanged. Called by `AtomicDetectionCheckpointer` before loading (the
        `VideoInstanceSegmenter` hook).
        """
        key = "query_embed.weight"
        queries = state_dict.get(key)
        expected = self.query_embed.weight.shape
        if queries is None or tuple(queries.shape) == tuple(expected):
            return state_dict
        queries = torch.as_tensor(queries)
        if self.num_frames > 1 and tuple(queries.shape) == (self.num_slots, expected[1]):
            logger.info(
                f"VisTR: inflating the one-frame checkpoint's {self.num_slots} slot queries "
                f"to {self.num_frames} frames"
            )
            state_dict = dict(state_dict)
            state_dict[key] = queries.repeat(self.num_frames, 1)
        return state_dict

    # ------------------------------------------------------------------ network
    def frame_features(self, images) -> Dict[str, Tensor]:
        """Per-frame work: backbone, input projection of C5, lateral adapters of C4/C3/C2.

        Args:
            images: detectron2 ImageList [F, 3, H, W] (normalised, padded).
        Returns:
            "src" [F, C, h, w] (stride 32), "mask" bool [F, h, w] (True = padding),
            "fpn0/1/2" [F, C/2|C/4|C/8, ...] (strides 16, 8, 4).
        """
        features, masks = backbone_with_masks(self.backbone, images)
        c2, c3, c4, c5 = (features[f] for f in self.in_features)
        fpn = self.mask_head.project_fpn(c4, c3, c2)
        return {
            "src": self.input_proj(c5),
            "mask": masks[self.in_features[-1]],
            "fpn0": fpn[0],
            "fpn1": fpn[1],
            "fpn2": fpn[2],
        }

    def decode(self, feats: Dict[str, Tensor], num_videos: int) -> Tuple[Dict, Dict[str, Tensor]]:
        """Transformer and class/box heads on B clips of T frames.

        Args:
            feats: `frame_features` output for B·T frames, video-major.
        Returns:
            outputs: "pred_logits" [B, T·N, K+2], "pred_boxes" [B, T·N, 4] (normalised cxcywh),
                "aux_outputs" (layers 0..L-2);
            mask_inputs: what `slot_masks` needs: "hs" [B·T, N, C] last-layer slot embeddings per
                frame, "memory" [B·T, C, h, w] encoder memory per frame, "mask" [B·T, h, w] padding
                (or None), "fpn0/1/2" the frames' lateral features.
        """
        b, t, n = num_videos, self.num_frames, self.num_slots
        src, mask = feats["src"], feats["mask"]
        c, h, w = src.shape[1:]
        src = src.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        mask5 = mask.view(b, t, h, w)
        pos = self.position_encoding(mask5).to(src.dtype)
        hs, memory = self.transformer(src, mask5, self.query_embed.weight, pos)
        outputs_class = self.class_embed(hs)
        outputs_coord = self.bbox_embed(hs).sigmoid()
        out = {"pred_logits": outputs_class[-1], "pred_boxes": outputs_coord[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": lg, "pred_boxes": bx}
                for lg, bx in zip(outputs_class[:-1], outputs_coord[:-1])
            ]
        mask_inputs = {
            # slot queries of frame t attend to frame t's memory
            "hs": hs[-1].reshape(b * t, n, c),
            "memory": memory.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w),
            "mask": mask if bool(mask.any()) else None,
            "fpn0": feats["fpn0"],
            "fpn1": feats["fpn1"],
            "fpn2": feats["fpn2"],
        }
        return out, mask_inputs

    def slot_masks(self, mask_inputs: Dict[str, Tensor], slots: Tensor) -> Tensor:
        """Mask head and 3-D fusion head for chosen slots of each video, all frames at once.

        Every slot's masks depend only on its own embeddings (per-query attention maps, GroupNorm
        per sample, the 3-D head per slot), so a subset gives the same values as the full set.
        Args:
            mask_inputs: from `decode`.
            slots: long [B, k] slot indices (0..N-1) per video.
        Returns:
            [B, k, T, h4, w4] mask logits at stride 4.
        """
        b, k = slots.shape
        t = self.num_frames
        hs = mask_inputs["hs"]
        c = hs.shape[-1]
        index = slots.to(hs.device).repeat_interleave(t, dim=0)  # [B·T, k], video-major like hs
        chosen = hs.gather(1, index[:, :, None].expand(-1, -1, c))
        attn = self.bbox_attention(chosen, mask_inputs["memory"], mask_inputs["mask"])
        fpns = [mask_inputs["fpn0"], mask_inputs["fpn1"], mask_inputs["fpn2"]]
        frame_masks = self.mask_head(mask_inputs["memory"], attn, fpns)  # [B·T·k, 24, h4, w4]
        h4, w4 = frame_masks.shape[-2:]
        # each slot's T frames through the 3-D conv: [B·k, 24, T, h4, w4]
        slot_clips = (
            frame_masks.view(b, t, k, -1, h4, w4)
            .permute(0, 2, 3, 1, 4, 5)
            .reshape(b * k, -1, t, h4, w4)
        )
        return self.insmask_head(slot_clips).view(b, k, t, h4, w4)

    def matched_slot_masks(
        self, mask_inputs: Dict[str, Tensor], batch: Tensor, query: Tensor
    ) -> Tensor:
        """Mask logits of the given (video, query) entries only: the mask head runs on the slots
        that have an entry (padded to the same count per video), not on all N — the mask losses read
        nothing else, so losses and gradients are those of the full head at a fraction of its cost.

        Args:
            batch, query: long [P] video index and query index (t·N + slot) of each entry.
        Returns:
            [P, h4, w4]; with P = 0 an empty slice that still reaches the mask head's parameters.
        """
        n = self.num_slots
        num_videos = mask_inputs["hs"].shape[0] // self.num_frames
        slot, frame = query % n, query // n
        chosen = [torch.unique(slot[batch == v]) for v in range(num_videos)]
        k = max(1, max(len(c) for c in chosen))
        # pad each video's list with its first slot (or slot 0): the padded rows are computed,
        # unused
        slots = torch.stack(
            [
                torch.cat([c, (c[:1] if len(c) else slot.new_zeros(1)).expand(k - len(c))])
                for c in chosen
            ]
        )
        masks = self.slot_masks(mask_inputs, slots)  # [B, k, T, h4, w4]
        position = torch.empty_like(slot)
        for v, c in enumerate(chosen):
            in_video = batch == v
            position[in_video] = torch.searchsorted(c, slot[in_video])  # unique() sorts
        return masks[batch.to(masks.device), position.to(masks.device), frame.to(masks.device)]

    def clip_forward(
        self, feats: Dict[str, Tensor], num_videos: int, mask_head_chunk: Optional[int] = None
    ) -> Dict:
        """`decode` plus the masks of every slot on every frame.

        Args:
            feats: `frame_features` output for B·T frames, video-major.
            mask_head_chunk: frames per mask-head pass (None = all at once).
        Returns:
            `decode`'s outputs and "pred_masks" [B, T·N, h4, w4] (logits at stride 4).
        """
        b, t, n = num_videos, self.num_frames, self.num_slots
        out, mask_inputs = self.decode(feats, num_videos)
        if mask_head_chunk is None:
            all_slots = torch.arange(n, device=mask_inputs["hs"].device).expand(b, n)
            fused = self.slot_masks(mask_inputs, all_slots)  # [B, N, T, h4, w4]
            h4, w4 = fused.shape[-2:]
        else:
            # test time: chunks of frames through the mask head, written straight into the
            # slot-major layout the 3-D head needs (no second copy), then the 3-D head one slot at a
            # time
            hs_frames, memory_frames, attn_mask = (
                mask_inputs["hs"],
                mask_inputs["memory"],
                mask_inputs["mask"],
            )
            slot_clips = None
            for s in range(0, b * t, mask_head_chunk):
                sl = slice(s, s + mask_head_chunk)
                attn = self.bbox_attention(
                    hs_frames[sl], memory_frames[sl], None if attn_mask is None else attn_mask[sl]
                )
                fpns = [mask_inputs["fpn0"][sl], mask_inputs["fpn1"][sl], mask_inputs["fpn2"][sl]]
                chunk = self.mask_head(memory_frames[sl], attn, fpns)
                chunk = chunk.view(-1, n, *chunk.shape[1:])  # [F, N, 24, h4, w4]
                if slot_clips is None:
                    slot_clips = chunk.new_empty((b, n, chunk.shape[2], t, *chunk.shape[-2:]))
                for f in range(chunk.shape[0]):
                    video, frame = divmod(s + f, t)
                    slot_clips[video, :, :, frame] = chunk[f]
            h4, w4 = slot_clips.shape[-2:]
            slot_clips = slot_clips.flatten(0, 1)
            fused = torch.cat([self.insmask_head(slot_clips[i : i + 1]) for i in range(b * n)])
        out["pred_masks"] = fused.view(b, n, t, h4, w4).transpose(1, 2).reshape(b, t * n, h4, w4)
        return out

    # ------------------------------------------------------------------ training
    def forward_train(self, batched_inputs: List[Dict]) -> Dict[str, Tensor]:
        if self.criterion is None:
            raise RuntimeError("VisTR: training needs a criterion (built from cfg)")
        frames, lengths = video_frames(batched_inputs)
        for video, length in zip(batched_inputs, lengths):
            if length != self.num_frames:
                raise ValueError(
                    f"VisTR: video {video.get('video_id', '?')} has {length} training frames but "
                    "the model's clip "
                    f"length MODEL.VISTR.NUM_FRAMES is {self.num_frames}; set "
                    "INPUT.SAMPLING_FRAME_NUM to it"
                )
        images = normalize_and_pad(
            frames, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )
        outputs, mask_inputs = self.decode(self.frame_features(images), len(batched_inputs))
        targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
        # masks only for the slots the criterion matched (see `matched_slot_masks`)
        return self.criterion(
            outputs, targets, mask_fn=lambda b, q: self.matched_slot_masks(mask_inputs, b, q)
        )

    def prepare_targets(self, batched_inputs: List[Dict], padded_size) -> List[Dict[str, Tensor]]:
        """Per video: "labels" long [M, T] (class index + 1, 0 where absent — the official layout),
        "boxes" [M, T, 4] normalised cxcywh from the masks (0 where absent), "valid" bool [M, T],
        "masks" bool [M, T, H_pad, W_pad]."""
        clip_targets = clip_targets_from_batch(batched_inputs, self.device)
        targets = []
        for video, tgt in zip(batched_inputs, clip_targets):
            masks, valid = tgt["masks"], tgt["valid"]
            num_tracks, t = valid.shape
            # the shared helper pads to the batch's largest frame; the input may be padded further
            pad_h, pad_w = padded_size[0] - masks.shape[-2], padded_size[1] - masks.shape[-1]
            if pad_h or pad_w:
                masks = F.pad(masks, (0, pad_w, 0, pad_h))
            boxes = torch.zeros((num_tracks, t, 4), device=self.device)
            for f, inst in enumerate(video["instances"]):
                h, w = inst.image_size
                xyxy = BitMasks(masks[:, f, :h, :w]).get_bounding_boxes().tensor.to(self.device)
                scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
                xyxy = xyxy / scale
                cxcywh = torch.stack(
                    [
                        (xyxy[:, 0] + xyxy[:, 2]) / 2,
                        (xyxy[:, 1] + xyxy[:, 3]) / 2,
                        xyxy[:, 2] - xyxy[:, 0],
                        xyxy[:, 3] - xyxy[:, 1],
                    ],
                    dim=-1,
                )
                boxes[:, f] = cxcywh * valid[:, f, None]
            labels = torch.where(
                valid, tgt["labels"][:, None] + 1, torch.zeros_like(valid, dtype=torch.long)
            )
            if num_tracks and int(labels.max()) > self.num_classes:
                raise ValueError(
                    f"VisTR: video {video.get('video_id', '?')} has class {int(labels.max()) - 1} "
                    ">= "
                    f"MODEL.VISTR.NUM_CLASSES={self.num_classes}"
                )
            targets.append({"labels": labels, "boxes": boxes, "valid": valid, "masks": masks})
        return targets

    # ------------------------------------------------------------------ inference
    def _window_predictions(
        self, cache: FrameFeatureCache, frame_ids: List[int]
    ) -> Dict[str, Tensor]:
        """One T-frame window: "probs" [T, N, K+2] class softmax (last = no-object),
        "mask_logits" [T, N, h4, w4]."""
        feats = cache.get(frame_ids)
        out = self.clip_forward(feats, 1, mask_head_chunk=self.test_mask_head_chunk)
        t, n = self.num_frames, self.num_slots
        probs = out["pred_logits"][0].softmax(-1).view(t, n, -1)
        return {
            "probs": probs,
            "mask_logits": out["pred_masks"][0].view(t, n, *out["pred_masks"].shape[-2:]),
        }

    def _frame_cache(self, frames: Sequence[Tensor]) -> FrameFeatureCache:
        def compute(frame_ids: List[int]) -> Dict[str, Tensor]:
            images = normalize_and_pad(
                [frames[i] for i in frame_ids],
                self.pixel_mean,
                self.pixel_std,
                self.backbone.size_divisibility,
            )
            return self.frame_features(images)

        return FrameFeatureCache(compute, self.test_chunk_size)

    def processed_frames(self, num_frames: int) -> int:
        """Frames the network runs on for a `num_frames`-frame video: a shorter video is tiled to
        the clip length T (the whole clip is computed), a longer one is cut into T-frame windows
        over its own frames. The benchmark divides a video's GFLOPs by this (see
        vis_zoo/zoo/benchmark.py)."""
        return max(int(num_frames), self.num_frames)

    @torch.no_grad()
    def inference_video(self, video: Dict) -> Dict:
        """One video of any length -> the output contract dict.

        `video["image"]` may be a lazy sequence (the demo's frame reader): frames are indexed only
        through the feature cache, a chunk at a time in ascending order, so the whole video is never
        held in memory (and each frame is read once, since windows move left to right)."""
        frames = input_frames(video)
        length = len(frames)
        if "height" in video and "width" in video:
            image_size = (int(video["height"]), int(video["width"]))
        else:  # read frame 0 only when the original size is not given (a lazy reader decodes it)
            shape = frames[0].shape
            image_size = (int(video.get("height", shape[-2])), int(video.get("width", shape[-1])))
        cache = self._frame_cache(frames)
        if length <= self.num_frames:
            # tile cyclically to T frames (official), keep the first `length`; each distinct frame's
            # backbone features are computed once
            window = self._window_predictions(cache, [i % length for i in range(self.num_frames)])
            return self._single_window_output(window, length, image_size)
        return self._long_video_output(cache, length, image_size)

    def _single_window_output(self, window: Dict[str, Tensor], length: int, image_size) -> Dict:
        """The official post-processing: per slot, score = mean over frames of the max class
        probability (index 0 included), class = the most frequent per-frame argmax, masks = bilinear
        upsampling straight to the original size; slots with no mask pixel are dropped, and a
        frame whose score is below the frame threshold has no mask."""
        probs = window["probs"][:length, :, :-1]  # [L, N, K+1], no-object left out
        frame_scores, frame_labels = probs.max(-1)  # [L, N]
        writer = VideoMaskWriter(
            length,
            image_size,
            output_rle=self.output_rle,
            mask_threshold=_logit(self.mask_threshold),
            track_chunk=self.num_slots,
            store_dir=self.test_store_dir,
        )
        all_slots = torch.ones(self.num_slots, dtype=torch.bool)
        for f in range(length):
            writer(f, window["mask_logits"][f], all_slots)
        masks = writer.track_masks(self.num_slots)
        scores, labels, kept_masks = [], [], []
        for slot in range(self.num_slots):
            if not track_has_pixels(masks[slot]):
                continue
            label = int(np.bincount(frame_labels[:, slot].cpu().numpy()).argmax())
            if label == 0:
                # index 0 is no dataset class (the official code would emit category 0, which the
                # evaluator ignores), so dropping the track scores the same
                continue
            low = (frame_scores[:, slot] < self.frame_score_threshold).cpu()
            kept_masks.append(_blank_frames(masks[slot], low))
            scores.append(frame_scores[:, slot].mean())
            labels.append(label - 1)
        if not scores:
            return empty_video_output(image_size)
        scores_t = torch.stack(scores).float().cpu()
        order = scores_t.argsort(descending=True)[: self.max_num_tracks].tolist()
        return build_video_output(
            image_size, scores_t[order], torch.tensor(labels)[order], [kept_masks[i] for i in order]
        )

    def _long_video_output(self, cache: FrameFeatureCache, length: int, image_size) -> Dict:
        """A video longer than T: windows of T frames every `test_window_stride` frames, joined into
        tracks by the shared soft-IoU association (the official code has no policy for this).

        Each window contributes its slots with a mask pixel; a slot's class probabilities are its
        per-frame softmax averaged over the window's frames, and a track's are averaged over its
        windows. Track class = argmax of those (dropped if it is the unused index 0), score = its
        probability; masks are the window-averaged logits, upsampled frame by frame."""
        mask_logit_threshold = _logit(self.mask_threshold)
        writer = VideoMaskWriter(
            length,
            image_size,
            output_rle=self.output_rle,
            mask_threshold=mask_logit_threshold,
            track_chunk=self.num_slots,
            store_dir=self.test_store_dir,
        )

        def clip_fn(frame_ids: List[int]) -> ClipPrediction:
            window = self._window_predictions(cache, frame_ids)
            slot_logits = window["mask_logits"].transpose(0, 1)  # [N, T, h4, w4]
            has_pixel = (slot_logits > mask_logit_threshold).flatten(1).any(1)
            return ClipPrediction(
                frame_ids, window["probs"].mean(0)[has_pixel], slot_logits[has_pixel]
            )

        class_probs = associate_clip_windows(
            length,
            clip_fn,
            window_size=self.num_frames,
            window_stride=self.test_window_stride,
            max_num_tracks=self.max_num_tracks,
            frame_sink=writer,
            on_window_done=cache.release_before,
        )
        num_tracks = class_probs.shape[0]
        if num_tracks == 0:
            return empty_video_output(image_size)
        masks = writer.track_masks(num_tracks)
        scores, best = class_probs[:, :-1].max(
            -1
        )  # index 0 included, as in the single-window score
        keep = [i for i in range(num_tracks) if int(best[i]) != 0 and track_has_pixels(masks[i])]
        if not keep:
            return empty_video_output(image_size)
        scores = scores[keep].float().cpu()
        order = scores.argsort(descending=True).tolist()
        return build_video_output(
            image_size,
            scores[order],
            (best[keep] - 1).cpu()[order],
            [masks[keep[i]] for i in order],
        )


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def _blank_frames(masks, frames: Tensor):
    """Empty the masks of the frames flagged in `frames` (bool [T]): zeros, or None for RLE."""
    if isinstance(masks, torch.Tensor):
        masks[frames] = False
        return masks
    return [None if bool(f) else m for m, f in zip(masks, frames)]
