"""Box-based Hungarian matching of video-level predictions (one box per frame) to GT tracks.

Costs for prediction n and GT track j over T frames (SeqFormer; Deformable-DETR's focal class cost):
    class: alpha (1-p)^gamma (-log(p + 1e-8)) - (1-alpha) p^gamma (-log(1 - p + 1e-8)), p =
           sigmoid(logit_c_j)
    bbox:  || b_n - b_j ||_p over all T*4 normalised cxcywh numbers (p = 2 in the official SeqFormer
           code)
    giou:  - mean_t GIoU(b_n,t, b_j,t)
"""

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou

from .matcher import solve_assignment

__all__ = ["box_cxcywh_to_xyxy", "focal_class_cost", "VideoBoxHungarianMatcher"]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def focal_class_cost(
    logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """logits [Q, K], labels long [G] -> [Q, G] focal classification cost."""
    prob = logits.sigmoid()
    neg = (1 - alpha) * (prob**gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return pos[:, labels] - neg[:, labels]


class VideoBoxHungarianMatcher(nn.Module):
    """Match [B, Q] video queries to each video's GT tracks with class, box and GIoU costs."""

    def __init__(
        self,
        *,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        bbox_cost_p: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("VideoBoxHungarianMatcher: all costs are 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.bbox_cost_p = bbox_cost_p
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def cost_matrix(
        self, logits: Tensor, boxes: Tensor, labels: Tensor, gt_boxes: Tensor
    ) -> Tensor:
        """logits [Q, K]; boxes [Q, T, 4]; labels [G]; gt_boxes [G, T, 4] (cxcywh) -> [Q, G]."""
        q, t = boxes.shape[:2]
        cost_class = focal_class_cost(logits, labels, self.focal_alpha, self.focal_gamma)
        cost_bbox = torch.cdist(boxes.flatten(1), gt_boxes.flatten(1).to(boxes), p=self.bbox_cost_p)
        cost_giou = 0
        for i in range(t):
            cost_giou = cost_giou - generalized_box_iou(
                box_cxcywh_to_xyxy(boxes[:, i]), box_cxcywh_to_xyxy(gt_boxes[:, i].to(boxes))
            )
        cost_giou = cost_giou / t
        return (
            self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        )

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        """
        Args:
            outputs: "pred_logits" [B, Q, K], "pred_boxes" [B, T, Q, 4] (cxcywh, normalised).
            targets: per video "labels" long [G], "boxes" [G, T, 4].
        Returns:
            per video (query indices, GT indices), int64 on the CPU, sorted by query.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        indices = []
        for b, tgt in enumerate(targets):
            if len(tgt["labels"]) == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            c = self.cost_matrix(
                logits[b].float(),
                boxes[b].transpose(0, 1).float(),
                tgt["labels"],
                tgt["boxes"].float(),
            )
            indices.append(solve_assignment(c, type(self).__name__))
        return indices
