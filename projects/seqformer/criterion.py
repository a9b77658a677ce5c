"""SeqFormer's losses: sigmoid focal classification, per-frame L1 and GIoU box losses, focal and
dice mask losses over the clip volume, for the last decoder layer and (with their own matching)
every auxiliary layer.
"""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou

from vis_zoo.modeling.box_matcher import box_cxcywh_to_xyxy
from vis_zoo.modeling.criterion import num_masks_normalizer
from vis_zoo.modeling.losses import dice_loss, sigmoid_focal_loss

__all__ = ["SeqFormerCriterion"]


class SeqFormerCriterion(nn.Module):
    """Losses of one decoder layer, given its matching.

    Targets (per video): "labels" long [G], "boxes" [G, T, 4] normalised cxcywh (absent frames:
    1e-6 boxes), "masks" float [G, T, H_pad/4, W_pad/4] (zeros where absent).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        weight_dict: Dict[str, float],
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.weight_dict = dict(weight_dict)
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def loss_labels(self, logits: Tensor, targets, indices, num_boxes: float) -> Tensor:
        """Focal loss over all [B, Q, K] logits, summed / num_boxes (one-hot targets, zeros =
        unmatched)."""
        onehot = torch.zeros_like(logits)
        for b, (src, tgt) in enumerate(indices):
            if len(src):
                onehot[b, src.to(logits.device), targets[b]["labels"][tgt.to(logits.device)]] = 1.0
        # [B*Q*K, 1]: the shared loss averages over dim 1 then sums, i.e. a plain sum here
        return sigmoid_focal_loss(
            logits.reshape(-1, 1),
            onehot.reshape(-1, 1),
            num_boxes,
            self.focal_alpha,
            self.focal_gamma,
        )

    def loss_boxes(
        self, boxes: Tensor, targets, indices, num_boxes: float
    ) -> Tuple[Tensor, Tensor]:
        """boxes [B, T, Q, 4]. L1 over T*4 / T and mean_t (1 - GIoU), each summed / num_boxes."""
        src, tgt = [], []
        for b, (s, t) in enumerate(indices):
            src.append(boxes[b][:, s.to(boxes.device)].transpose(0, 1))  # [M, T, 4]
            tgt.append(targets[b]["boxes"][t.to(boxes.device)])
        src, tgt = torch.cat(src), torch.cat(tgt).to(src[0])
        num_frames = boxes.shape[1]
        if src.shape[0] == 0:
            zero = boxes.sum() * 0.0
            return zero, zero
        loss_bbox = F.l1_loss(src.flatten(1), tgt.flatten(1), reduction="none") / num_frames
        loss_giou = 0
        for i in range(num_frames):
            giou = torch.diag(
                generalized_box_iou(box_cxcywh_to_xyxy(src[:, i]), box_cxcywh_to_xyxy(tgt[:, i]))
            )
            loss_giou = loss_giou + 1 - giou
        loss_giou = loss_giou / num_frames
        return loss_bbox.sum() / num_boxes, loss_giou.sum() / num_boxes

    def loss_masks(
        self, masks: Sequence[Tensor], targets, indices, num_boxes: float
    ) -> Tuple[Tensor, Tensor]:
        """masks: per video [M_b, T, h, w] logits of its matched queries (in `indices` order)."""
        src = torch.cat([m for m in masks]).flatten(1)
        tgt = torch.cat([targets[b]["masks"][t.to(src.device)] for b, (_, t) in enumerate(indices)])
        tgt = tgt.flatten(1).to(src)
        if src.shape[0] == 0:
            zero = src.sum() * 0.0
            return zero, zero
        return (
            sigmoid_focal_loss(src, tgt, num_boxes, self.focal_alpha, self.focal_gamma),
            dice_loss(src, tgt, num_boxes),
        )

    def layer_losses(
        self,
        logits: Tensor,
        boxes: Tensor,
        masks: Sequence[Tensor],
        targets,
        indices,
        num_boxes: float,
        suffix: str = "",
    ) -> Dict[str, Tensor]:
        """Weighted losses of one layer; keys loss_ce/bbox/giou/mask/dice + suffix."""
        loss_bbox, loss_giou = self.loss_boxes(boxes, targets, indices, num_boxes)
        loss_mask, loss_dice = self.loss_masks(masks, targets, indices, num_boxes)
        raw = {
            "loss_ce": self.loss_labels(logits, targets, indices, num_boxes),
            "loss_bbox": loss_bbox,
            "loss_giou": loss_giou,
            "loss_mask": loss_mask,
            "loss_dice": loss_dice,
        }
        return {k + suffix: v * self.weight_dict[k] for k, v in raw.items()}

    @staticmethod
    def num_boxes(targets: List[dict], device) -> float:
        """Number of GT tracks in the batch, averaged over workers, at least 1."""
        return num_masks_normalizer(targets, device)
