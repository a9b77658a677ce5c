"""Mask2Former's set criterion: softmax CE + point-sampled sigmoid BCE and dice, with deep
supervision.

Mask losses are evaluated on K = `num_points` points per matched mask, chosen by importance sampling
(Mask2Former / PointRend): `oversample_ratio * K` uniform candidates, of which the
`importance_sample_ratio * K` most uncertain (smallest |logit|) are kept, plus the rest uniform.
Point labels are read from the full-resolution (padded) targets, point logits from the /4
predictions.

`point_sampled_mask_losses` also serves clip masks [N, T, h, w]: points are chosen per frame-mask
and the T point sets are concatenated per instance before the BCE mean and the dice (VITA).
"""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config

from vis_zoo.modeling.criterion import num_masks_normalizer, src_permutation_idx
from vis_zoo.modeling.losses import dice_loss, sigmoid_ce_loss

from .matcher import PointHungarianMatcher

__all__ = [
    "point_sampled_mask_losses",
    "Mask2FormerCriterion",
    "calculate_uncertainty",
    "build_mask2former_criterion",
]


def calculate_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of point logits [R, 1, P]: -|logit| (highest where the logit is closest to 0)."""
    return -logits.abs()


def point_sampled_mask_losses(
    src_masks: Tensor,
    tgt_masks: Tensor,
    num_masks: float,
    *,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    per_frame: bool = False,
) -> Tuple[Tensor, Tensor]:
    """BCE and dice of matched masks on importance-sampled points.

    Args:
        src_masks: [N, *F, h, w] mask logits (F: optional frame axes).
        tgt_masks: [N, *F, H, W] targets in [0, 1].
        num_masks: the normaliser.
        per_frame: each frame mask is its own term of the BCE sum and of the dice (Mask2Former-VIS);
            otherwise each instance's points over all its frames form one vector (VITA).
    Returns:
        (loss_mask, loss_dice) scalars.
    """
    n = src_masks.shape[0]
    if n == 0:
        zero = src_masks.sum() * 0.0
        return zero, zero
    src = src_masks.reshape(-1, 1, *src_masks.shape[-2:])
    tgt = tgt_masks.reshape(-1, 1, *tgt_masks.shape[-2:]).to(src.dtype)
    with torch.no_grad():
        coords = get_uncertain_point_coords_with_randomness(
            src, calculate_uncertainty, num_points, oversample_ratio, importance_sample_ratio
        )
        point_labels = point_sample(tgt, coords, align_corners=False).squeeze(1)
    point_logits = point_sample(src, coords, align_corners=False).squeeze(1)
    rows = src.shape[0] if per_frame else n
    point_logits = point_logits.reshape(rows, -1)
    point_labels = point_labels.reshape(rows, -1)
    return (
        sigmoid_ce_loss(point_logits, point_labels, num_masks),
        dice_loss(point_logits, point_labels, num_masks),
    )


class MatchedMaskLosses(nn.Module):
    """The classification and point-sampled mask losses of Hungarian-matched predictions, shared by
    Mask2Former's frame criterion and VITA's video criterion.

    Holds `num_classes` (K), the `matcher`, the loss `weight_dict`, `empty_weight` [K+1] (the CE
    weight of each class, `eos_coef` for "no object") and the point-sampling settings;
    `per_frame_mask_losses` as `point_sampled_mask_losses`'s `per_frame` for clip masks.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        eos_coef: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        per_frame_mask_losses: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.per_frame_mask_losses = per_frame_mask_losses
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, logits: Tensor, targets: Sequence[dict], indices) -> Tensor:
        """Softmax CE over all Q queries of every prediction set; unmatched queries target "no
        object".

        logits [N, Q, K+1]; targets N dicts with "labels" [G]; indices N (query, target)
        matchings."""
        idx = src_permutation_idx(indices)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        if len(idx[0]):
            matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(
                logits.device
            )
            target_classes[idx] = matched
        return F.cross_entropy(
            logits.transpose(1, 2), target_classes, self.empty_weight.to(logits.dtype)
        )

    def loss_masks(self, pred_masks: Tensor, targets: Sequence[dict], indices, num_masks: float):
        """Point-sampled BCE and dice of the matched masks (`point_sampled_mask_losses`).

        pred_masks [N, Q, h, w] or clip masks [N, Q, T, h, w]; targets N dicts with "masks"
        [G, H, W] or [G, T, H, W]. Returns (loss_mask, loss_dice)."""
        idx = src_permutation_idx(indices)
        src = pred_masks[idx]
        if len(idx[0]):
            tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        else:
            tgt = src.new_zeros((0,) + (1,) * (src.dim() - 1))
        return point_sampled_mask_losses(
            src,
            tgt,
            num_masks,
            num_points=self.num_points,
            oversample_ratio=self.oversample_ratio,
            importance_sample_ratio=self.importance_sample_ratio,
            per_frame=self.per_frame_mask_losses,
        )


class Mask2FormerCriterion(MatchedMaskLosses):
    """Hungarian-matched losses for Mask2Former's per-image predictions (and all aux sets).

    forward(outputs, targets) with
        outputs: {"pred_logits": [N, Q, K+1], "pred_masks": [N, Q, h, w], "aux_outputs": list of the
                  same for the earlier prediction sets (oldest first)}
        targets: N dicts (one per image/frame) with "labels" [G] and "masks" [G, H, W].
    Clip masks work the same way (Mask2Former-VIS: "pred_masks" [N, Q, T, h, w], N clips with
    "masks" [G, T, H, W]; the matcher reads every frame at the same points).
    returns (losses, indices): losses `loss_ce`, `loss_mask`, `loss_dice` for the last set and the
    same keys with suffix `_i` for aux set i (unweighted); `indices` is the list of the matchings of
    the last `num_indices_to_return` prediction sets, oldest first (VITA's similarity loss uses
    them).
    """

    def __init__(self, *, num_indices_to_return: int = 1, **matched_mask_losses):
        """`matched_mask_losses`: the keyword arguments of `MatchedMaskLosses` (num_classes,
        matcher, weight_dict, eos_coef, point sampling, per_frame_mask_losses)."""
        super().__init__(**matched_mask_losses)
        self.num_indices_to_return = num_indices_to_return

    def _losses_for(self, outputs: Dict[str, Tensor], targets, num_masks: float, suffix: str):
        indices = self.matcher(outputs, targets)
        loss_mask, loss_dice = self.loss_masks(outputs["pred_masks"], targets, indices, num_masks)
        losses = {
            "loss_ce" + suffix: self.loss_labels(outputs["pred_logits"], targets, indices),
            "loss_mask" + suffix: loss_mask,
            "loss_dice" + suffix: loss_dice,
        }
        return losses, indices

    def forward(self, outputs: Dict[str, Tensor], targets: Sequence[dict]):
        num_masks = num_masks_normalizer(targets, outputs["pred_logits"].device)
        # Same order as Mask2Former: the last set first, then the aux sets (oldest first).
        losses, final_indices = self._losses_for(outputs, targets, num_masks, "")
        all_indices: List = []
        for i, aux_out in enumerate(outputs.get("aux_outputs", [])):
            l_dict, indices = self._losses_for(aux_out, targets, num_masks, f"_{i}")
            losses.update(l_dict)
            all_indices.append(indices)
        all_indices.append(final_indices)
        keep = max(self.num_indices_to_return, 0)
        return losses, (all_indices[len(all_indices) - keep :] if keep else [])


def build_mask2former_criterion(
    cfg, num_indices_to_return: int = 1, per_frame_mask_losses: bool = False
) -> Mask2FormerCriterion:
    """The criterion from MODEL.MASK_FORMER.* (matcher costs = loss weights, deep supervision over
    DEC_LAYERS - 1 aux sets), as VITA and MinVIS build it for frames and Mask2Former-VIS for clips
    (with `per_frame_mask_losses`, as the official video criterion)."""
    mf = cfg.MODEL.MASK_FORMER
    matcher = PointHungarianMatcher(
        cost_class=mf.CLASS_WEIGHT,
        cost_mask=mf.MASK_WEIGHT,
        cost_dice=mf.DICE_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
    )
    base = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
    weight_dict = dict(base)
    if mf.DEEP_SUPERVISION:
        for i in range(mf.DEC_LAYERS - 1):
            weight_dict.update({f"{k}_{i}": w for k, w in base.items()})
    return Mask2FormerCriterion(
        num_classes=num_classes_from_config(cfg),
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=mf.NO_OBJECT_WEIGHT,
        num_points=mf.TRAIN_NUM_POINTS,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
        num_indices_to_return=num_indices_to_return,
        per_frame_mask_losses=per_frame_mask_losses,
    )
