"""VITA meta-architecture: Mask2Former per frame + the VITA module over its frame queries (spec §1-4).

Training: all frames of the B clips go through backbone and Mask2Former at once; the frame losses use
every prediction set, the last LAST_LAYER_NUM sets' frame queries feed VITA, whose video masks are
mask embeddings dotted with `vita_mask_features(F4)` of every frame.

Inference (one video at a time, any length): frames go through the detector TEST_RUN_CHUNK_SIZE at a
time (TEST_RUN_CHUNK_SIZE_CPU on CPU); only the last layer's frame queries [T, fQ, C] and the VITA mask
features [T, C, H/4, W/4] are kept (the frame-level /4 mask predictions are never computed). One offline VITA pass over all object
tokens then gives the video queries; masks are produced TEST_INTERPOLATE_CHUNK_SIZE frames at a time.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import BitMasks, ImageList
from torch import Tensor, nn

from vis_zoo.modeling.backbone import normalize_and_pad, video_frames
from vis_zoo.modeling.mask2former import Mask2FormerCriterion, Mask2FormerHead, PointHungarianMatcher
from vis_zoo.modeling.postprocessing import build_video_output, encode_rle

from .criterion import VitaCriterion
from .vita_module import VITAModule

__all__ = ["Vita"]


@META_ARCH_REGISTRY.register()
class Vita(nn.Module):
    """VITA (Heo et al., NeurIPS 2022). Training returns a weighted loss dict; inference returns one
    output dict per video: image_size, pred_scores [K], pred_labels [K], pred_masks (K x bool
    [T, H, W], or K lists of T RLE dicts with MODEL.VIS.OUTPUT_RLE)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, sem_seg_head: Mask2FormerHead, criterion: Mask2FormerCriterion,
                 vita_module: VITAModule, vita_criterion: VitaCriterion, num_classes: int, num_queries: int,
                 size_divisibility: int, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 last_layer_num: int = 3, test_topk_per_video: int = 10, freeze_detector: bool = False,
                 test_run_chunk_size: int = 18, test_run_chunk_size_cpu: int = 2,
                 test_interpolate_chunk_size: int = 5,
                 test_keep_query_ratio: float = 1.0, test_feature_store: str = "auto",
                 output_rle: bool = False):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.vita_module = vita_module
        self.vita_criterion = vita_criterion
        self.num_classes = num_classes
        self.num_queries = num_queries
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.last_layer_num = last_layer_num
        self.test_topk_per_video = test_topk_per_video
        if not 0.0 < test_keep_query_ratio <= 1.0:
            raise ValueError(f"MODEL.VITA.TEST_KEEP_QUERY_RATIO must be in (0, 1], got {test_keep_query_ratio}")
        self.test_keep_query_ratio = test_keep_query_ratio
        if test_feature_store not in ("auto", "device", "cpu"):
            raise ValueError(f"MODEL.VITA.TEST_FEATURE_STORE must be auto/device/cpu, got {test_feature_store!r}")
        self.test_feature_store = test_feature_store
        if test_run_chunk_size < 1 or test_run_chunk_size_cpu < 1:
            raise ValueError("MODEL.VITA.TEST_RUN_CHUNK_SIZE and TEST_RUN_CHUNK_SIZE_CPU must be >= 1, got "
                             f"{test_run_chunk_size} and {test_run_chunk_size_cpu}")
        self.test_run_chunk_size = test_run_chunk_size
        self.test_run_chunk_size_cpu = test_run_chunk_size_cpu
        self.test_interpolate_chunk_size = max(1, test_interpolate_chunk_size)
        self.output_rle = output_rle
        self.freeze_detector = freeze_detector
        if freeze_detector:
            # Train only the VITA module on a fixed frame-level detector (spec: FREEZE_DETECTOR).
            for name, p in self.named_parameters():
                if not name.startswith("vita_module."):
                    p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        sem_seg_head = Mask2FormerHead(cfg, backbone.output_shape())
        mf, v = cfg.MODEL.MASK_FORMER, cfg.MODEL.VITA
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        matcher = PointHungarianMatcher(cost_class=mf.CLASS_WEIGHT, cost_mask=mf.MASK_WEIGHT,
                                        cost_dice=mf.DICE_WEIGHT, num_points=mf.TRAIN_NUM_POINTS)
        base = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
        weight_dict = dict(base)
        if mf.DEEP_SUPERVISION:
            for i in range(mf.DEC_LAYERS - 1):
                weight_dict.update({f"{k}_{i}": w for k, w in base.items()})
        criterion = Mask2FormerCriterion(
            num_classes=num_classes, matcher=matcher, weight_dict=weight_dict, eos_coef=mf.NO_OBJECT_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS, oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO, num_indices_to_return=v.LAST_LAYER_NUM,
        )
        vita_module = VITAModule(cfg)
        vita_matcher = PointHungarianMatcher(cost_class=mf.CLASS_WEIGHT, cost_mask=mf.MASK_WEIGHT,
                                             cost_dice=mf.DICE_WEIGHT, num_points=mf.TRAIN_NUM_POINTS)
        vita_weights = {"loss_vita_ce": mf.CLASS_WEIGHT, "loss_vita_mask": mf.MASK_WEIGHT,
                        "loss_vita_dice": mf.DICE_WEIGHT}
        if v.DEEP_SUPERVISION:
            for i in range(v.DEC_LAYERS - 1):
                vita_weights.update({f"{k}_{i}": vita_weights[k]
                                     for k in ("loss_vita_ce", "loss_vita_mask", "loss_vita_dice")})
        if v.SIM_WEIGHT > 0.0:
            vita_weights["loss_vita_sim"] = v.SIM_WEIGHT
        vita_criterion = VitaCriterion(
            num_classes=num_classes, matcher=vita_matcher, weight_dict=vita_weights, eos_coef=v.NO_OBJECT_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS, oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO, sim_weight=v.SIM_WEIGHT,
            sim_use_clip=v.SIM_USE_CLIP,
        )
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "vita_module": vita_module,
            "vita_criterion": vita_criterion,
            "num_classes": num_classes,
            "num_queries": v.NUM_OBJECT_QUERIES,
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "last_layer_num": v.LAST_LAYER_NUM,
            "test_topk_per_video": min(cfg.TEST.DETECTIONS_PER_IMAGE, cfg.MODEL.VIS.MAX_NUM_TRACKS),
            "freeze_detector": v.FREEZE_DETECTOR,
            "test_run_chunk_size": v.TEST_RUN_CHUNK_SIZE,
            "test_run_chunk_size_cpu": v.TEST_RUN_CHUNK_SIZE_CPU,
            "test_interpolate_chunk_size": v.TEST_INTERPOLATE_CHUNK_SIZE,
            "test_keep_query_ratio": v.TEST_KEEP_QUERY_RATIO,
            "test_feature_store": v.TEST_FEATURE_STORE,
            "output_rle": cfg.MODEL.VIS.OUTPUT_RLE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[dict]):
        if self.training:
            return self.train_forward(batched_inputs)
        return [self.inference_video(video) for video in batched_inputs]

    # ================================================================== training
    def train_forward(self, batched_inputs: List[dict]) -> Dict[str, Tensor]:
        frames, lengths = video_frames(batched_inputs)
        if len(set(lengths)) != 1:
            raise ValueError(f"VITA training needs clips of equal length, got {lengths} frames "
                             f"(videos {[v.get('video_id') for v in batched_inputs]})")
        num_frames, num_videos = lengths[0], len(batched_inputs)
        images = normalize_and_pad(frames, self.pixel_mean, self.pixel_std, self.size_divisibility)

        # A frozen detector needs no graph: run it without autograd (same values, less memory).
        with torch.set_grad_enabled(not self.freeze_detector):
            features = self.backbone(images.tensor)
            outputs = self.sem_seg_head(features, num_frame_query_layers=self.last_layer_num)
        mask_features = self.vita_module.vita_mask_features(outputs["pixel_features"])
        mask_features = mask_features.view(num_videos, num_frames, *mask_features.shape[-3:])

        frame_targets, clip_targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:], num_frames)
        losses, frame_indices = self.criterion(outputs, frame_targets)
        losses = {k: v * self.criterion.weight_dict[k] for k, v in losses.items() if k in self.criterion.weight_dict}

        vita_outputs = self.vita_module(outputs["frame_queries"], num_frames)
        vita_outputs["pred_masks"] = torch.einsum("lbqc,btchw->lbqthw", vita_outputs["pred_mask_embed"], mask_features)
        for aux in vita_outputs["aux_outputs"]:
            aux["pred_masks"] = torch.einsum("lbqc,btchw->lbqthw", aux["pred_mask_embed"], mask_features)
        vita_losses = self.vita_criterion(vita_outputs, clip_targets, frame_targets, frame_indices)
        weights = self.vita_criterion.weight_dict
        losses.update({k: v * weights[k] for k, v in vita_losses.items() if k in weights})
        return losses

    def prepare_targets(self, batched_inputs: Sequence[dict], padded_hw: Tuple[int, int], num_frames: int):
        """Mapper instances -> (frame targets: B*T dicts, clip targets: B dicts), as the official code.

        Clip GT = tracks present (non-empty mask) in >= 1 sampled frame; ids become -1 where the mask
        is empty, then are shifted so the smallest valid id is 0. Masks are placed in the padded
        canvas [G, T, H_pad, W_pad] (zeros where absent).
        """
        h_pad, w_pad = padded_hw
        frame_targets, clip_targets = [], []
        for video in batched_inputs:
            if "instances" not in video:
                raise ValueError(f"video {video.get('video_id', '?')}: training input has no 'instances'")
            per_frame = video["instances"]
            if len(per_frame) != num_frames:
                raise ValueError(f"video {video.get('video_id', '?')}: {len(per_frame)} instance sets for "
                                 f"{num_frames} frames")
            num_inst = len(per_frame[0])
            masks = torch.zeros((num_inst, num_frames, h_pad, w_pad), dtype=torch.bool, device=self.device)
            classes = torch.full((num_inst,), -1, dtype=torch.long, device=self.device)
            ids = []
            for f, inst in enumerate(per_frame):
                if len(inst) != num_inst:
                    raise ValueError(f"video {video.get('video_id', '?')}: frame {f} has {len(inst)} rows, "
                                     f"frame 0 has {num_inst} (rows must be the same tracks in every frame)")
                inst = inst.to(self.device)
                h, w = inst.image_size
                fill = classes == -1
                classes[fill] = inst.gt_classes[fill].long()
                ids.append(inst.gt_ids.long())
                gt = inst.gt_masks.tensor if isinstance(inst.gt_masks, BitMasks) else inst.gt_masks
                masks[:, f, :h, :w] = gt.bool()
            ids = torch.stack(ids, dim=1) if num_inst else torch.zeros((0, num_frames), dtype=torch.long,
                                                                        device=self.device)
            ids[masks.flatten(2).sum(-1) == 0] = -1
            valid_frame = ids != -1
            valid_clip = valid_frame.any(dim=-1)
            classes, ids, masks = classes[valid_clip], ids[valid_clip], masks[valid_clip].float()
            valid_frame = valid_frame[valid_clip]
            if len(ids) > 0:
                min_id = max(int(ids[valid_frame].min()), 0)
                ids[valid_frame] -= min_id
            clip_targets.append({"labels": classes, "ids": ids, "masks": masks})
            for f in range(num_frames):
                keep = ids[:, f] != -1
                frame_targets.append({"labels": classes[keep], "ids": ids[keep, f], "masks": masks[keep, f]})
        return frame_targets, clip_targets

    # ================================================================== inference
    def _store_device(self, num_frames: int) -> torch.device:
        if self.test_feature_store == "cpu":
            return torch.device("cpu")
        if self.test_feature_store == "device":
            return self.device
        return self.device if num_frames <= 36 else torch.device("cpu")

    def _keep_queries(self, frame_queries: Tensor, logits: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Token pruning: the top ratio of each frame's queries by foreground probability.

        frame_queries [t, fQ, C], logits [t, fQ, K+1] -> ([t, k, C], index [t, k] or None)."""
        if self.test_keep_query_ratio >= 1.0:
            return frame_queries, None
        fq = frame_queries.shape[1]
        k = max(1, int(math.ceil(fq * self.test_keep_query_ratio)))
        no_object = logits.softmax(-1)[..., -1]
        index = no_object.topk(k, dim=1, largest=False).indices.sort(dim=1).values
        return torch.gather(frame_queries, 1, index[..., None].expand(-1, -1, frame_queries.shape[-1])), index

    @torch.no_grad()
    def encode_frames(self, frames: Sequence[Tensor]):
        """Detector over all frames, in chunks. Returns (frame_queries [T, fQ', C], query_index [T, fQ']
        or None, mask_features [T, C, h4, w4] (on the store device), padded size, unpadded size)."""
        store = self._store_device(len(frames))
        queries, indices = [], []
        # One [T, C, h4, w4] buffer filled chunk by chunk: collecting the chunks in a list and
        # concatenating them at the end held every frame's mask features twice at the peak.
        mask_features: Optional[Tensor] = None
        padded_hw = image_hw = None
        run_chunk = self.test_run_chunk_size_cpu if self.device.type == "cpu" else self.test_run_chunk_size
        for start in range(0, len(frames), run_chunk):
            chunk = frames[start:start + run_chunk]
            images = normalize_and_pad(chunk, self.pixel_mean, self.pixel_std, self.size_divisibility)
            # channels-last frames: the same convolutions, ~1.3x faster on CPU (oneDNN) and on
            # tensor-core GPUs; only float rounding changes.
            features = self.backbone(images.tensor.contiguous(memory_format=torch.channels_last))
            out = self.sem_seg_head.forward_queries(features, num_frame_query_layers=1)
            del features
            fq, index = self._keep_queries(out["frame_queries"][-1], out["pred_logits"])
            queries.append(fq)
            if index is not None:
                indices.append(index)
            chunk_features = self.vita_module.vita_mask_features(out["pixel_features"])
            if mask_features is None:
                mask_features = chunk_features.new_empty((len(frames), *chunk_features.shape[1:]), device=store)
            elif chunk_features.shape[1:] != mask_features.shape[1:]:
                raise ValueError(f"video frames must share one size: frames {start}..{start + len(chunk) - 1} give "
                                 f"mask features {tuple(chunk_features.shape[1:])}, earlier frames "
                                 f"{tuple(mask_features.shape[1:])}")
            mask_features[start:start + len(chunk)] = chunk_features
            padded_hw, image_hw = tuple(images.tensor.shape[-2:]), tuple(images.image_sizes[0])
            del out, images, chunk_features
        query_index = torch.cat(indices) if indices else None
        return torch.cat(queries), query_index, mask_features, padded_hw, image_hw

    @torch.no_grad()
    def inference_video(self, video: dict) -> dict:
        frames = video.get("image")
        if frames is None or len(frames) == 0:
            raise ValueError(f"video {video.get('video_id', '?')}: input has no 'image' frames")
        num_frames = len(frames)
        frame_queries, query_index, mask_features, padded_hw, image_hw = self.encode_frames(frames)
        out_h = int(video.get("height", image_hw[0]))
        out_w = int(video.get("width", image_hw[1]))

        vita_out = self.vita_module(frame_queries[None], num_frames=num_frames, query_index=query_index)
        mask_cls = vita_out["pred_logits"][-1, 0]  # [cQ, K+1]
        mask_embed = vita_out["pred_mask_embed"][-1, 0]  # [cQ, C]
        del vita_out, frame_queries

        # top-k over the flattened (query, class) pairs: a query may be kept with several classes
        scores = mask_cls.softmax(-1)[:, :-1]
        k = min(self.test_topk_per_video, scores.numel())
        top_scores, top_idx = scores.flatten().topk(k, sorted=True)
        labels = top_idx % self.num_classes
        query_idx = torch.div(top_idx, self.num_classes, rounding_mode="floor")
        embed = mask_embed[query_idx]

        numerator = torch.zeros(k, dtype=torch.float32, device=self.device)
        denominator = torch.zeros(k, dtype=torch.float32, device=self.device)
        track_masks: List[list] = [[] for _ in range(k)]
        for start in range(0, num_frames, self.test_interpolate_chunk_size):
            feats = mask_features[start:start + self.test_interpolate_chunk_size].to(self.device)
            # [k, C] @ [t, C, h·w] -> [t, k, h·w]: a batched matmul over the features as they are
            # stored (an einsum to "qthw" first copies all t·C·h·w features into a permuted layout)
            t_chunk, _, h4, w4 = feats.shape
            logits = torch.matmul(embed, feats.flatten(2)).view(t_chunk, -1, h4, w4).transpose(0, 1)
            logits = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
            logits = logits[:, :, : image_hw[0], : image_hw[1]]
            soft = logits.sigmoid()
            hard = soft > 0.5
            numerator += (soft.flatten(1) * hard.flatten(1)).sum(1)
            denominator += hard.flatten(1).sum(1)
            binary = F.interpolate(logits, size=(out_h, out_w), mode="bilinear", align_corners=False) > 0.0
            binary = binary.cpu()
            for q in range(k):
                if self.output_rle:
                    track_masks[q].extend(encode_rle(m) for m in binary[q])
                else:
                    track_masks[q].append(binary[q])
            del logits, soft, hard, binary
        final_scores = top_scores * (numerator / (denominator + 1e-6))
        masks = track_masks if self.output_rle else [torch.cat(m) for m in track_masks]
        return build_video_output((out_h, out_w), final_scores, labels, masks)
