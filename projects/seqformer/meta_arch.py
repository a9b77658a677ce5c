"""SeqFormer meta-architecture (Wu et al., "SeqFormer: Sequential Transformer for Video Instance
Segmentation", ECCV 2022), following the official wjf5203/SeqFormer (models/segmentation.py): ResNet
C3-C5 + one strided level -> per-frame deformable encoder ->
decoder with video-level instance queries and per-frame box queries -> focal classes, per-frame
boxes, CondInst-style dynamic masks.

Inference (one dict per video, the VIS Zoo output contract): a video no longer than
MODEL.VIS.TEST_WINDOW_SIZE frames is processed in one pass, as the official `inference.py`; longer
videos are split into overlapping windows joined by `vis_zoo.modeling.associate_clip_windows`.
The per-frame work (backbone, encoder, mask features) is done MODEL.VIS.TEST_CHUNK_SIZE frames at a
time and kept only while a window needs it, and masks are computed once per video, for the last
layer and the selected queries only (the official code computes them for all 300 queries and all six
layers), which gives the same output for a fraction of the time and memory.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling.backbone import (
    FrameFeatureCache,
    input_frames,
    normalize_and_pad,
    video_frames,
)
from vis_zoo.modeling.box_matcher import VideoBoxHungarianMatcher
from vis_zoo.modeling.clip_association import ClipPrediction, associate_clip_windows
from vis_zoo.modeling.deformable_transformer import flatten_levels, get_valid_ratio
from vis_zoo.modeling.meta_arch import VideoInstanceSegmenter
from vis_zoo.modeling.position_encoding import PositionEmbeddingSine2D
from vis_zoo.modeling.postprocessing import (
    VideoMaskWriter,
    build_video_output,
    empty_video_output,
    track_has_pixels,
)
from vis_zoo.modeling.transformer_layers import MLP, clone_modules

from .criterion import SeqFormerCriterion
from .mask_head import MaskHeadSmallConv, dynamic_mask_logits
from .transformer import SeqFormerTransformer, inverse_sigmoid

__all__ = ["SeqFormer"]

_LOSS_KEYS = ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice")


@META_ARCH_REGISTRY.register()
class SeqFormer(VideoInstanceSegmenter):
    """SeqFormer on the `VideoInstanceSegmenter` interface (`forward_train` -> loss dict,
    `inference_video` -> one output dict per video)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        in_features: Sequence[str],
        num_classes: int,
        hidden_dim: int = 256,
        nheads: int = 8,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
        num_queries: int = 300,
        rel_coord: bool = True,
        mask_out_stride: int = 4,
        matcher: nn.Module,
        criterion: SeqFormerCriterion,
        deep_supervision: bool = True,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        test_topk: int = 10,
        mask_threshold: float = 0.5,
        test_chunk_size: int = 36,
        test_window_size: int = 36,
        test_window_stride: int = 18,
        output_rle: bool = False,
        max_num_tracks: int = 100,
        test_store_dir: str = "",
    ):
        super().__init__()
        if hidden_dim % 32 != 0:
            raise ValueError(
                f"SeqFormer: hidden_dim must be a multiple of 32 (GroupNorm), got {hidden_dim}"
            )
        if len(in_features) < 3 or num_feature_levels < len(in_features):
            raise ValueError(
                f"SeqFormer: needs >= 3 backbone levels (the mask head fuses /8, /16, /32) and "
                f"num_feature_levels >= len(in_features); got {list(in_features)}, "
                f"{num_feature_levels}"
            )
        self.backbone = backbone
        self.in_features = list(in_features)
        self.num_classes, self.num_queries = num_classes, num_queries
        self.num_feature_levels = num_feature_levels
        self.hidden_dim = hidden_dim
        shapes = backbone.output_shape()
        self.feature_strides = [shapes[f].stride for f in self.in_features]
        self.mask_feat_stride = self.feature_strides[0]
        self.mask_out_stride = mask_out_stride
        self.rel_coord = rel_coord

        # input projections: 1x1 conv + GN per backbone level, 3x3 stride-2 conv + GN per extra
        # level
        projs = []
        for f in self.in_features:
            projs.append(
                nn.Sequential(
                    nn.Conv2d(shapes[f].channels, hidden_dim, 1), nn.GroupNorm(32, hidden_dim)
                )
            )
        in_ch = shapes[self.in_features[-1]].channels
        for _ in range(num_feature_levels - len(self.in_features)):
            projs.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, hidden_dim, 3, stride=2, padding=1),
                    nn.GroupNorm(32, hidden_dim),
                )
            )
            in_ch = hidden_dim
        self.input_proj = nn.ModuleList(projs)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.position_embedding = PositionEmbeddingSine2D(
            hidden_dim // 2, normalize=True, offset=-0.5
        )

        self.transformer = SeqFormerTransformer(
            d_model=hidden_dim,
            nhead=nheads,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            num_feature_levels=num_feature_levels,
            dec_n_points=dec_n_points,
            enc_n_points=enc_n_points,
        )
        # heads: Deformable-DETR init, one module cloned per decoder layer (identical initial
        # values)
        class_embed = nn.Linear(hidden_dim, num_classes)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        self.class_embed = clone_modules(class_embed, dec_layers)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        self.transformer.decoder.bbox_embed = clone_modules(bbox_embed, dec_layers)
        nn.init.constant_(self.transformer.decoder.bbox_embed[0].layers[-1].bias[2:], -2.0)
        self.query_embed = nn.Embedding(num_queries, hidden_dim * 2)

        # dynamic mask head (CondInst): (C/32 + 2) -> 8 -> 8 -> 1 channels
        self.mask_in_channels = hidden_dim // 32
        self.dynamic_channels = 8
        first_in = self.mask_in_channels + (2 if rel_coord else 0)
        self.weight_nums = [first_in * 8, 8 * 8, 8]
        self.bias_nums = [8, 8, 1]
        self.controller = MLP(
            hidden_dim, hidden_dim, sum(self.weight_nums) + sum(self.bias_nums), 3
        )
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.mask_head = MaskHeadSmallConv(hidden_dim)

        self.matcher, self.criterion = matcher, criterion
        self.deep_supervision = deep_supervision
        self.register_pixel_normalization(pixel_mean, pixel_std)
        self.size_divisibility = size_divisibility
        self.test_topk, self.mask_threshold = test_topk, mask_threshold
        self.test_chunk_size = test_chunk_size
        self.test_window_size, self.test_window_stride = test_window_size, test_window_stride
        self.output_rle, self.max_num_tracks = output_rle, max_num_tracks
        self.test_store_dir = test_store_dir or None  # RLE masks' temporary file

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.SEQFORMER
        num_classes = num_classes_from_config(cfg)
        weight_dict = {
            "loss_ce": c.CLASS_WEIGHT,
            "loss_bbox": c.BBOX_WEIGHT,
            "loss_giou": c.GIOU_WEIGHT,
            "loss_mask": c.MASK_WEIGHT,
            "loss_dice": c.DICE_WEIGHT,
        }
        return {
            "backbone": build_backbone(cfg),
            "in_features": c.IN_FEATURES,
            "num_classes": num_classes,
            "hidden_dim": c.HIDDEN_DIM,
            "nheads": c.NHEADS,
            "enc_layers": c.ENC_LAYERS,
            "dec_layers": c.DEC_LAYERS,
            "dim_feedforward": c.DIM_FEEDFORWARD,
            "dropout": c.DROPOUT,
            "num_feature_levels": c.NUM_FEATURE_LEVELS,
            "enc_n_points": c.ENC_N_POINTS,
            "dec_n_points": c.DEC_N_POINTS,
            "num_queries": c.NUM_QUERIES,
            "rel_coord": c.REL_COORD,
            "mask_out_stride": c.MASK_OUT_STRIDE,
            "matcher": VideoBoxHungarianMatcher(
                cost_class=c.COST_CLASS,
                cost_bbox=c.COST_BBOX,
                cost_giou=c.COST_GIOU,
                bbox_cost_p=c.BBOX_COST_P,
                focal_alpha=c.FOCAL_ALPHA,
                focal_gamma=c.FOCAL_GAMMA,
            ),
            "criterion": SeqFormerCriterion(
                num_classes=num_classes,
                weight_dict=weight_dict,
                focal_alpha=c.FOCAL_ALPHA,
                focal_gamma=c.FOCAL_GAMMA,
            ),
            "deep_supervision": c.DEEP_SUPERVISION,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": c.SIZE_DIVISIBILITY,
            "test_topk": c.TEST_TOPK,
            "mask_threshold": c.MASK_THRESHOLD,
            "test_chunk_size": cfg.MODEL.VIS.TEST_CHUNK_SIZE,
            "test_window_size": cfg.MODEL.VIS.TEST_WINDOW_SIZE,
            "test_window_stride": cfg.MODEL.VIS.TEST_WINDOW_STRIDE,
            "output_rle": cfg.MODEL.VIS.OUTPUT_RLE,
            "test_store_dir": cfg.MODEL.VIS.TEST_STORE_DIR,
            "max_num_tracks": cfg.MODEL.VIS.MAX_NUM_TRACKS,
        }

    @property
    def bbox_embed(self) -> nn.ModuleList:
        """The per-layer box MLPs (owned by the decoder, which uses them for box refinement)."""
        return self.transformer.decoder.bbox_embed

    # ------------------------------------------------------------------ per-frame work
    def _frame_levels(self, images: Tensor, image_mask: Tensor):
        """Projected levels of a batch of frames.

        images [F, 3, H, W]; image_mask bool [F, H, W] (True = padding) ->
        srcs, masks, pos: lists of L tensors [F, C, h_l, w_l] / [F, h_l, w_l] / [F, C, h_l, w_l].
        """
        feats = self.backbone(images)
        srcs, masks, poses = [], [], []

        def add(src):
            # nearest-resized image mask, as the official Joiner and extra levels do
            mask = F.interpolate(image_mask[None].float(), size=src.shape[-2:])[0].to(torch.bool)
            srcs.append(src)
            masks.append(mask)
            poses.append(self.position_embedding(mask).to(src.dtype))

        for lvl, name in enumerate(self.in_features):
            add(self.input_proj[lvl](feats[name]))
        for lvl in range(len(self.in_features), self.num_feature_levels):
            prev = feats[self.in_features[-1]] if lvl == len(self.in_features) else srcs[-1]
            add(self.input_proj[lvl](prev))
        return srcs, masks, poses

    def _encode_frames(
        self,
        images: Tensor,
        image_mask: Tensor,
        frames_per_video: int,
        valid_ratios: Optional[Tensor] = None,
    ):
        """Backbone + encoder + mask features of F = B*T frames (video-major).

        Returns memory [F, S, C], padding mask [F, S], spatial shapes [L, 2], valid ratios [B, L, 2]
        (from each video's first frame, as the official code), mask features [F, C/32, h_8, w_8].
        """
        srcs, masks, poses = self._frame_levels(images, image_mask)
        src, mask_flat, pos, shapes, level_start = flatten_levels(
            srcs, masks, poses, self.transformer.level_embed
        )
        if valid_ratios is None:
            ratios = torch.stack([get_valid_ratio(m) for m in masks], 1)  # [F, L, 2]
            valid_ratios = ratios[::frames_per_video]
        frame_ratios = valid_ratios.repeat_interleave(frames_per_video, 0)
        memory = self.transformer.encode(src, pos, mask_flat, shapes, level_start, frame_ratios)
        return memory, mask_flat, shapes, valid_ratios, self._mask_features(memory, shapes)

    def _mask_features(self, memory: Tensor, spatial_shapes: Tensor) -> Tensor:
        """memory [F, S, C] -> mask features [F, C/32, h_8, w_8] from the first three levels."""
        levels, start = [], 0
        for h, w in spatial_shapes.tolist()[:3]:
            # contiguous NCHW: a strided view would send the convs to PyTorch's slow fallback kernel
            levels.append(
                memory[:, start : start + h * w].transpose(1, 2).unflatten(2, (h, w)).contiguous()
            )
            start += h * w
        return self.mask_head(levels)

    def _heads(self, hs: Tensor) -> Tensor:
        """hs [n_layers, B, Q, C] -> class logits [n_layers, B, Q, K]."""
        return torch.stack([self.class_embed[i](hs[i]) for i in range(hs.shape[0])])

    def _masks(
        self, mask_feats: Tensor, reference: Tensor, params: Tensor, image_hw: Tuple[int, int]
    ) -> Tensor:
        """Masks of M queries of one video.

        mask_feats [T, C/32, h, w]; reference [T, M, 2 or 4] (the reference entering the layer,
        sigmoid space); params [M, P]; image_hw: the unpadded (augmented) image size -> logits [M,
        T, 2h, 2w].
        """
        h, w = image_hw
        scale = torch.tensor([w, h], dtype=reference.dtype, device=reference.device)
        ref_xy = (
            inverse_sigmoid(reference).sigmoid()[..., :2] * scale
        )  # raw pixels, as the official code
        return dynamic_mask_logits(
            mask_feats,
            ref_xy.transpose(0, 1),
            params,
            channels=self.dynamic_channels,
            weight_nums=self.weight_nums,
            bias_nums=self.bias_nums,
            feat_stride=self.mask_feat_stride,
            out_stride=self.mask_out_stride,
            rel_coord=self.rel_coord,
        )

    # ------------------------------------------------------------------ training
    def forward_train(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        frames, lengths = video_frames(batched_inputs)
        num_frames = lengths[0]
        if any(n != num_frames for n in lengths):
            raise ValueError(
                f"SeqFormer training needs the same number of frames per clip, got {lengths}"
            )
        num_videos = len(batched_inputs)
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)
        image_mask = self._image_mask(images)
        memory, mask_flat, shapes, valid_ratios, mask_feats = self._encode_frames(
            images.tensor, image_mask, num_frames
        )
        s, c = memory.shape[1:]
        hs, _, boxes, references = self.transformer.decode(
            memory.view(num_videos, num_frames, s, c),
            mask_flat.view(num_videos, num_frames, s),
            shapes,
            valid_ratios,
            self.query_embed.weight,
        )
        logits = self._heads(hs)

        padded_hw = tuple(images.tensor.shape[-2:])
        targets = self.prepare_targets(batched_inputs, padded_hw)
        num_boxes = self.criterion.num_boxes(targets, self.device)
        image_sizes = [images.image_sizes[b * num_frames] for b in range(num_videos)]
        layers = range(hs.shape[0]) if self.deep_supervision else [hs.shape[0] - 1]
        losses = {}
        for layer in layers:
            indices = self.matcher(
                {"pred_logits": logits[layer], "pred_boxes": boxes[layer]}, targets
            )
            params = self.controller(hs[layer])
            masks = []
            for b, (src, _) in enumerate(indices):
                src = src.to(self.device)
                vid_feats = mask_feats[b * num_frames : (b + 1) * num_frames]
                masks.append(
                    self._masks(
                        vid_feats, references[layer][b][:, src], params[b, src], image_sizes[b]
                    )
                )
            suffix = "" if layer == hs.shape[0] - 1 else f"_{layer}"
            losses.update(
                self.criterion.layer_losses(
                    logits[layer], boxes[layer], masks, targets, indices, num_boxes, suffix
                )
            )
        return losses

    @staticmethod
    def _image_mask(images) -> Tensor:
        """bool [F, H_pad, W_pad], True on padding."""
        n, _, h, w = images.tensor.shape
        mask = torch.ones((n, h, w), dtype=torch.bool, device=images.tensor.device)
        for i, (ih, iw) in enumerate(images.image_sizes):
            mask[i, :ih, :iw] = False
        return mask

    def prepare_targets(self, batched_inputs: List[dict], padded_hw: Tuple[int, int]) -> List[dict]:
        """Clip-level targets per video.

        Returns dicts with "labels" long [G]; "boxes" [G, T, 4] normalised cxcywh (absent frames: 0,
        clamped to 1e-6 like the official data pipeline); "masks" float [G, T, H_pad/s, W_pad/s],
        the padded GT subsampled (not resized) at offset s/2 with s = MASK_OUT_STRIDE.
        """
        stride = self.mask_out_stride
        hp, wp = padded_hw
        if hp % stride or wp % stride:
            raise ValueError(
                f"SeqFormer: padded size {padded_hw} must be a multiple of MASK_OUT_STRIDE={stride}"
            )
        targets = []
        for video in batched_inputs:
            what = f"video {video.get('video_id', '?')}"
            if "instances" not in video:
                raise ValueError(f"{what}: training input has no 'instances'")
            frames = video["instances"]
            num_tracks = len(frames[0])
            ids = (
                torch.stack([f.gt_ids for f in frames], 1)
                if num_tracks
                else torch.zeros(0, len(frames), dtype=torch.long)
            )
            for t, inst in enumerate(frames):
                if len(inst) != num_tracks:
                    raise ValueError(
                        f"{what}: frame {t} has {len(inst)} instance rows, frame 0 has {num_tracks}"
                    )
            present = ids != -1
            keep = present.any(1)
            h, w = frames[0].image_size
            boxes = torch.zeros((num_tracks, len(frames), 4))
            masks = torch.zeros((num_tracks, len(frames), hp, wp))
            classes = torch.full((num_tracks, len(frames)), -1, dtype=torch.long)
            for t, inst in enumerate(frames):
                if num_tracks == 0:
                    continue
                xyxy = inst.gt_boxes.tensor.float().cpu()
                cxcywh = torch.stack(
                    [
                        (xyxy[:, 0] + xyxy[:, 2]) / 2 / w,
                        (xyxy[:, 1] + xyxy[:, 3]) / 2 / h,
                        (xyxy[:, 2] - xyxy[:, 0]) / w,
                        (xyxy[:, 3] - xyxy[:, 1]) / h,
                    ],
                    -1,
                )
                boxes[:, t] = cxcywh * present[:, t, None]
                gt_masks = (
                    inst.gt_masks.tensor if hasattr(inst.gt_masks, "tensor") else inst.gt_masks
                )
                masks[:, t, :h, :w] = gt_masks.float().cpu() * present[:, t, None, None]
                classes[:, t] = inst.gt_classes.cpu()
            first = present.float().argmax(1) if num_tracks else torch.zeros(0, dtype=torch.long)
            labels = classes.gather(1, first[:, None])[:, 0] if num_tracks else classes[:, 0]
            if num_tracks and ((labels[keep] < 0) | (labels[keep] >= self.num_classes)).any():
                raise ValueError(f"{what}: gt_classes outside [0, {self.num_classes})")
            targets.append(
                {
                    "labels": labels[keep].to(self.device),
                    "boxes": boxes[keep].clamp(min=1e-6).to(self.device),
                    "masks": masks[keep][:, :, stride // 2 :: stride, stride // 2 :: stride].to(
                        self.device
                    ),
                }
            )
        return targets

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        frames = input_frames(video)
        num_frames = len(frames)
        out_hw = (
            int(video.get("height", frames[0].shape[-2])),
            int(video.get("width", frames[0].shape[-1])),
        )
        image_hw = tuple(frames[0].shape[-2:])
        state = {}

        def compute(frame_ids: List[int]) -> Dict[str, Tensor]:
            images = normalize_and_pad(
                [frames[i] for i in frame_ids], self.pixel_mean, self.pixel_std, 0
            )
            mask = self._image_mask(images)
            memory, _, shapes, _, mask_feats = self._encode_frames(
                images.tensor, mask, len(frame_ids)
            )
            state["shapes"] = shapes
            return {"memory": memory, "mask_feats": mask_feats}

        cache = FrameFeatureCache(compute, self.test_chunk_size)

        def run_clip(frame_ids: List[int]):
            feats = cache.get(frame_ids)
            memory = feats["memory"][None]
            num_levels = self.num_feature_levels
            ratios = memory.new_ones((1, num_levels, 2))  # no padding at test time
            hs, _, _, references = self.transformer.decode(
                memory, None, state["shapes"], ratios, self.query_embed.weight
            )
            logits = self.class_embed[-1](hs[-1, 0])  # [Q, K]
            return logits, hs[-1, 0], references[-1][0], feats["mask_feats"]

        writer = VideoMaskWriter(
            num_frames,
            out_hw,
            output_rle=self.output_rle,
            mask_threshold=0.0,
            store_dir=self.test_store_dir,
        )
        if num_frames <= self.test_window_size:
            logits, hs, reference, mask_feats = run_clip(list(range(num_frames)))
            scores, idx = logits.sigmoid().flatten().topk(min(self.test_topk, logits.numel()))
            queries, labels = idx // self.num_classes, idx % self.num_classes
            params = self.controller(hs[queries])
            mask_logits = self._masks(
                mask_feats, reference[:, queries], params, image_hw
            )  # [k, T, h, w]
            valid = torch.ones(len(queries), dtype=torch.bool)
            for t in range(num_frames):
                writer(t, mask_logits[:, t], valid)
            masks = writer.track_masks(len(queries))
        else:

            def clip_fn(frame_ids: List[int]) -> ClipPrediction:
                logits, hs, reference, mask_feats = run_clip(frame_ids)
                probs = logits.sigmoid()
                _, idx = probs.flatten().topk(min(self.test_topk, probs.numel()))
                queries = torch.unique(idx // self.num_classes)
                params = self.controller(hs[queries])
                mask_logits = self._masks(mask_feats, reference[:, queries], params, image_hw)
                # the associator expects a trailing no-object column; sigmoid scores have none
                class_probs = torch.cat([probs[queries], probs.new_zeros(len(queries), 1)], 1)
                return ClipPrediction(frame_ids, class_probs, mask_logits)

            track_probs = associate_clip_windows(
                num_frames,
                clip_fn,
                window_size=self.test_window_size,
                window_stride=self.test_window_stride,
                max_num_tracks=self.max_num_tracks,
                frame_sink=writer,
                on_window_done=cache.release_before,
            )
            if track_probs.numel() == 0:
                return empty_video_output(out_hw)
            fg = track_probs[:, :-1]
            scores, idx = fg.flatten().topk(min(self.test_topk, fg.numel()))
            queries, labels = idx // self.num_classes, idx % self.num_classes
            track_masks = writer.track_masks(track_probs.shape[0])
            masks = [track_masks[q] for q in queries.tolist()]
        keep = [i for i, m in enumerate(masks) if track_has_pixels(m)]
        if not keep:
            return empty_video_output(out_hw)
        keep_t = torch.as_tensor(keep, dtype=torch.long, device=scores.device)
        return build_video_output(out_hw, scores[keep_t], labels[keep_t], [masks[i] for i in keep])
