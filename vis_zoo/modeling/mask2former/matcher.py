"""Mask2Former's point-sampled Hungarian matcher, for frame-level and clip-level masks.

The cost of pairing prediction q with target g (minimised) is

    cost_class * (-p_q(c_g)) + cost_mask * BCE(q, g) + cost_dice * (1 - dice(q, g))

with p the softmax class probability, BCE the mean sigmoid cross-entropy and dice =
(2*sum(s*y) + 1) / (sum(s) + sum(y) + 1), s = sigmoid(logit). Both mask terms are evaluated on
`num_points` uniformly random points in [0, 1]^2, the same points for every prediction and target of
one batch element, read with bilinear `point_sample` (align_corners=False) from the predicted
(low-resolution) logits and from the (full-resolution, padded) targets.

Masks may have extra leading axes after the instance axis: a clip mask [Q, T, h, w] is read at the
same points in every frame and flattened to T * num_points values (VITA's video-level matcher); a
frame mask [Q, h, w] gives num_points values (Mask2Former's).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from torch import Tensor, nn

from vis_zoo.modeling.matcher import solve_assignment

__all__ = ["PointHungarianMatcher", "sample_mask_points", "pairwise_point_costs"]


def sample_mask_points(masks: Tensor, point_coords: Tensor) -> Tensor:
    """Read masks at shared points.

    Args:
        masks: [N, *F, h, w] (F: optional frame axes, e.g. T).
        point_coords: [P, 2] (x, y) in [0, 1].
    Returns:
        [N, prod(F) * P]: per instance, the points of frame 0, then frame 1, ...
    """
    n = masks.shape[0]
    flat = masks.reshape(-1, 1, *masks.shape[-2:])
    coords = point_coords[None].expand(flat.shape[0], -1, -1).to(flat.dtype)
    values = point_sample(flat, coords, align_corners=False)  # [N*F, 1, P]
    return values.reshape(n, -1)


def pairwise_point_costs(pred_points: Tensor, tgt_points: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean sigmoid BCE and dice loss of every prediction against every target.

    Args:
        pred_points: [Q, P] logits. tgt_points: [G, P] targets in [0, 1].
    Returns:
        (bce [Q, G], dice_loss [Q, G]).
    """
    num_p = pred_points.shape[1]
    # BCE(x, y) = y * softplus(-x) + (1 - y) * softplus(x): linear in y, so one matmul per term.
    pos = F.binary_cross_entropy_with_logits(
        pred_points, torch.ones_like(pred_points), reduction="none"
    )
    neg = F.binary_cross_entropy_with_logits(
        pred_points, torch.zeros_like(pred_points), reduction="none"
    )
    bce = (pos @ tgt_points.t() + neg @ (1 - tgt_points).t()) / num_p
    prob = pred_points.sigmoid()
    numerator = 2 * prob @ tgt_points.t()
    denominator = prob.sum(-1)[:, None] + tgt_points.sum(-1)[None, :]
    dice = 1 - (numerator + 1) / (denominator + 1)
    return bce, dice


class PointHungarianMatcher(nn.Module):
    """One-to-one assignment of Q predictions to the G targets of each batch element.

    forward(outputs, targets, point_coords=None):
        outputs: {"pred_logits": [N, Q, K+1], "pred_masks": [N, Q, *F, h, w] logits}
        targets: N dicts with "labels" long [G_n] and "masks" [G_n, *F, H, W] (0/1, any float/bool).
        point_coords: optional list of N [P, 2] point sets (tests); default: fresh uniform points.
    Returns:
        N pairs (pred_idx, tgt_idx), int64 CPU tensors of length min(Q, G_n), sorted by pred_idx.
    """

    def __init__(
        self,
        *,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
    ):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("PointHungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        logits: Tensor,
        pred_masks: Tensor,
        labels: Tensor,
        tgt_masks: Tensor,
        point_coords: Optional[Tensor] = None,
    ) -> Tensor:
        """[Q, G] cost of one batch element (fp32, whatever the inputs' dtype)."""
        prob = logits.float().softmax(-1)
        cost_class = -prob[:, labels]
        if point_coords is None:
            point_coords = torch.rand(self.num_points, 2, device=pred_masks.device)
        point_coords = point_coords.to(pred_masks.device, torch.float32)
        tgt_points = sample_mask_points(
            tgt_masks.to(pred_masks.device, torch.float32), point_coords
        )
        pred_points = sample_mask_points(pred_masks.float(), point_coords)
        cost_bce, cost_dice = pairwise_point_costs(pred_points, tgt_points)
        return self.cost_mask * cost_bce + self.cost_class * cost_class + self.cost_dice * cost_dice

    @torch.no_grad()
    def forward(
        self,
        outputs: Dict[str, Tensor],
        targets: Sequence[dict],
        point_coords: Optional[Sequence[Tensor]] = None,
    ) -> List[Tuple[Tensor, Tensor]]:
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        num = logits.shape[0]
        if len(targets) != num:
            raise ValueError(f"matcher: {num} predictions but {len(targets)} targets")
        device = masks.device
        with torch.autocast(
            device_type=device.type, enabled=False
        ):  # costs in fp32, as the official
            return self._match(logits, masks, targets, point_coords)

    def _match(
        self,
        logits: Tensor,
        masks: Tensor,
        targets: Sequence[dict],
        point_coords: Optional[Sequence[Tensor]],
    ) -> List[Tuple[Tensor, Tensor]]:
        num, device = logits.shape[0], masks.device
        sizes = [len(t["labels"]) for t in targets]
        if point_coords is None:
            point_coords = [torch.rand(self.num_points, 2, device=device) for _ in range(num)]
        coords = torch.stack([c.to(device, torch.float32) for c in point_coords])  # [N, P, 2]
        # All images at once: one bilinear read of every prediction and of every target (same
        # values as reading each image separately, without a python loop over point sampling).
        pred_points = self._points(masks.float(), coords)  # [N, Q, F*P]
        tgt_masks = [t["masks"] for t in targets if len(t["labels"])]
        tgt_points = None
        if tgt_masks:
            tgt_all = torch.cat([m.to(device, torch.float32) for m in tgt_masks])
            owner = torch.cat(
                [torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes) if n]
            ).to(device)
            tgt_points = self._points(tgt_all[:, None], coords[owner])[:, 0]  # [sum G, F*P]
        prob = logits.float().softmax(-1)
        indices, start = [], 0
        for i, target in enumerate(targets):
            n = sizes[i]
            if n == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            labels = target["labels"].to(device)
            cost_bce, cost_dice = pairwise_point_costs(
                pred_points[i], tgt_points[start : start + n]
            )
            cost = (
                self.cost_mask * cost_bce
                + self.cost_class * (-prob[i][:, labels])
                + self.cost_dice * cost_dice
            )
            start += n
            indices.append(solve_assignment(cost, type(self).__name__))
        return indices

    @staticmethod
    def _points(masks: Tensor, coords: Tensor) -> Tensor:
        """masks [N, M, *F, h, w], coords [N, P, 2] -> [N, M, prod(F) * P] (points of image n)."""
        n, m = masks.shape[:2]
        flat = masks.reshape(n, -1, *masks.shape[-2:])  # [N, M*F, h, w]
        values = point_sample(flat, coords, align_corners=False)  # [N, M*F, P]
        return values.reshape(n, m, -1)
