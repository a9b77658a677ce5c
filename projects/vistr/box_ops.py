"""The two box overlaps VisTR uses, with its +1e-6 smoothing (which keeps degenerate boxes finite).

Matching uses plain IoU, the loss uses GIoU; both are element-wise (pairs along the last axis but
one), boxes in normalised (cx, cy, w, h).
"""

import torch
from torch import Tensor

from vis_zoo.modeling.box_matcher import box_cxcywh_to_xyxy  # noqa: F401  (the shared conversion)


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """(inter + 1e-6) / (union + 1e-6) of xyxy boxes [..., 4] (broadcast) -> [...]."""
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).prod(-1)
    return (inter + 1e-6) / (area1 + area2 - inter + 1e-6)


def paired_generalized_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of xyxy boxes [P, 4] pairwise along P -> [P], with VisTR's 1e-6 terms:
    iou - ((enclosing - union) + 1e-6) / (enclosing + 1e-6)."""
    if not ((boxes1[:, 2:] >= boxes1[:, :2]).all() and (boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise ValueError("paired_generalized_iou: boxes must be xyxy with x1 >= x0 and y1 >= y0")
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(-1)
    union = area1 + area2 - inter
    iou = (inter + 1e-6) / (union + 1e-6)
    enclosing = (
        (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2]))
        .clamp(min=0)
        .prod(-1)
    )
    return iou - ((enclosing - union) + 1e-6) / (enclosing + 1e-6)
