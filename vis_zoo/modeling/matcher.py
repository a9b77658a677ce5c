"""Mask-based Hungarian matching between clip-level predictions and clip-level ground truth."""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .losses import pairwise_dice_coefficient, pairwise_sigmoid_focal_cost


def solve_assignment(cost: Tensor, matcher: str) -> Tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of a [rows, cols] cost matrix (scipy's Hungarian solver).

    Returns (row indices, column indices) as int64 tensors. Raises a ValueError naming `matcher`
    when the cost has NaN/inf entries (predictions that are not finite: a diverged model, or random
    weights that overflow) instead of scipy's bare "matrix contains invalid numeric entries".
    """
    cost = cost.detach().float().cpu()
    if not torch.isfinite(cost).all():
        bad = int((~torch.isfinite(cost)).sum())
        raise ValueError(
            f"{matcher}: {bad} of {cost.numel()} matching costs are NaN/inf: the predictions are "
            "not finite (a diverged model, or random weights whose activations overflow)"
        )
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


class MaskHungarianMatcher(nn.Module):
    """One-to-one assignment of Q predictions to the G ground-truth instances of each video.

    The cost of pairing prediction q with target g (minimised) is

        -(cost_dice * dice_coef(q, g) + cost_class * p_q(c_g)) + cost_focal * focal(q, g)

    where p is the softmax class probability, dice_coef = (2*sum(p*t)+1)/(sum(p)+sum(t)+1) over the
    whole flattened mask (T*h*w for clips: frames where the instance is absent contribute zeros),
    and focal the mean pixel focal loss. With cost_focal = 0 this is exactly IFC's
    ``linear_sum_assignment(cost_dice*dice + cost_class*p, maximize=True)``.

    Costs are computed for the whole batch at once ([B*Q, sum G]) and split per video.

    Inputs of forward:
        outputs: {"pred_logits": [B, Q, K+1], "pred_masks": [B, Q, T, h, w] logits}
        targets: list of B dicts with "labels" [G_b] (long) and `mask_key` [G_b, T, H, W] float
            targets (all videos at the same H, W). Predictions are bilinearly resized to (H, W).
    Returns:
        list of B (pred_idx, tgt_idx) int64 tensor pairs, each of length min(Q, G_b).
    """

    def __init__(
        self,
        *,
        cost_class: float = 1.0,
        cost_dice: float = 1.0,
        cost_focal: float = 0.0,
        mask_key: str = "match_masks",
    ):
        super().__init__()
        if cost_class == 0 and cost_dice == 0 and cost_focal == 0:
            raise ValueError("MaskHungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_dice = cost_dice
        self.cost_focal = cost_focal
        self.mask_key = mask_key

    @torch.no_grad()
    def cost_matrices(self, outputs: Dict[str, Tensor], targets: Sequence[dict]) -> List[Tensor]:
        """The [Q, G_b] cost matrix of every video (on the predictions' device)."""
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        num_videos, num_queries = logits.shape[:2]
        sizes = [len(t["labels"]) for t in targets]
        if sum(sizes) == 0:
            return [logits.new_zeros((num_queries, 0)) for _ in range(num_videos)]
        tgt_masks = torch.cat([t[self.mask_key] for t in targets if len(t["labels"])]).to(masks)
        tgt_labels = torch.cat([t["labels"] for t in targets])
        if tgt_masks.shape[1] != masks.shape[2]:
            raise ValueError(
                f"matcher: targets have {tgt_masks.shape[1]} frames, predictions {masks.shape[2]}"
            )

        out_masks = masks.flatten(0, 1)  # [B*Q, T, h, w]
        if out_masks.shape[-2:] != tgt_masks.shape[-2:]:
            out_masks = F.interpolate(
                out_masks, size=tgt_masks.shape[-2:], mode="bilinear", align_corners=False
            )
        out_masks = out_masks.flatten(1)
        tgt_flat = tgt_masks.flatten(1)
        prob = logits.flatten(0, 1).softmax(-1)

        gain = (
            self.cost_dice * pairwise_dice_coefficient(out_masks, tgt_flat)
            + self.cost_class * prob[:, tgt_labels]
        )
        cost = -gain
        if self.cost_focal != 0:
            cost = cost + self.cost_focal * pairwise_sigmoid_focal_cost(out_masks, tgt_flat)
        cost = cost.view(num_videos, num_queries, -1)
        return [c[b] for b, c in enumerate(cost.split(sizes, dim=-1))]

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: Sequence[dict]
    ) -> List[Tuple[Tensor, Tensor]]:
        indices = []
        for cost in self.cost_matrices(outputs, targets):
            indices.append(solve_assignment(cost, type(self).__name__))
        return indices
