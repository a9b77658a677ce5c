"""VisTR's set criterion: CE (no-object weight), L1 + GIoU on boxes, sigmoid focal + dice on masks,
with class/box losses repeated on every earlier decoder layer (each with its own matching)."""

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor, nn

from vis_zoo.modeling.losses import dice_loss, sigmoid_focal_loss

from .box_ops import box_cxcywh_to_xyxy, paired_generalized_iou


class VisTRCriterion(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        eos_coef: float,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        """
        Args:
            num_classes: K dataset classes. Logits have K+2 entries: 0 = the official's unused index
                (the class of absent frames in matching), 1..K = classes, K+1 = no-object.
            matcher: a VisTRSequenceMatcher.
            weight_dict: weights of loss_ce, loss_bbox, loss_giou, loss_mask, loss_dice; the aux
                losses loss_ce_i / loss_bbox_i / loss_giou_i take the weight of their base name.
            eos_coef: CE weight of the no-object class.
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        empty_weight = torch.ones(num_classes + 2)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @staticmethod
    def _flat_src_index(indices) -> Tuple[Tensor, Tensor]:
        """(batch index, query index) of every matched pair, [P] each."""
        batch = torch.cat([torch.full_like(q, b) for b, (q, _, _) in enumerate(indices)])
        query = torch.cat([q for q, _, _ in indices])
        return batch, query

    def loss_labels(self, outputs, targets, indices) -> Dict[str, Tensor]:
        logits = outputs["pred_logits"]  # [B, Q, K+2]
        batch, query = self._flat_src_index(indices)
        matched = torch.cat([tgt["labels"][j, f] for tgt, (_, j, f) in zip(targets, indices)])
        target_classes = torch.full(
            logits.shape[:2], self.num_classes + 1, dtype=torch.long, device=logits.device
        )
        target_classes[batch, query] = matched
        return {
            "loss_ce": F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)
        }

    def loss_boxes(self, outputs, targets, indices, normalizer: float) -> Dict[str, Tensor]:
        batch, query = self._flat_src_index(indices)
        src = outputs["pred_boxes"][batch, query]
        tgt = torch.cat([t["boxes"][j, f] for t, (_, j, f) in zip(targets, indices)])
        if src.shape[0] == 0:
            zero = outputs["pred_boxes"].sum() * 0.0  # keeps the box head in the graph (DDP)
            return {"loss_bbox": zero, "loss_giou": zero}
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / normalizer
        giou = paired_generalized_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        return {"loss_bbox": loss_bbox, "loss_giou": (1 - giou).sum() / normalizer}

    def loss_masks(
        self, outputs, targets, indices, normalizer: float, mask_fn=None
    ) -> Dict[str, Tensor]:
        batch, query = self._flat_src_index(indices)
        if mask_fn is not None:
            src = mask_fn(batch, query)  # [P, h4, w4]
        else:
            src = outputs["pred_masks"][batch, query]  # from [B, Q, h4, w4]
        if src.shape[0] == 0:
            zero = (
                src.sum() * 0.0
            )  # keeps the mask head in the graph (DDP needs every parameter used)
            return {"loss_mask": zero, "loss_dice": zero}
        tgt = torch.cat([t["masks"][j, f] for t, (_, j, f) in zip(targets, indices)]).to(src.dtype)
        src = F.interpolate(
            src[:, None], size=tgt.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        src, tgt = src.flatten(1), tgt.flatten(1)
        return {
            "loss_mask": sigmoid_focal_loss(
                src, tgt, normalizer, self.focal_alpha, self.focal_gamma
            ),
            "loss_dice": dice_loss(src, tgt, normalizer),
        }

    def forward(
        self, outputs: Dict, targets: List[Dict[str, Tensor]], mask_fn=None
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: "pred_logits" [B, Q, K+2], "pred_boxes" [B, Q, 4], "pred_masks" [B, Q, h4, w4],
                "aux_outputs" (list of dicts with logits/boxes of decoder layers 0..L-2).
            targets: per video "labels" [M, T], "boxes" [M, T, 4], "valid" [M, T], "masks" [M, T, H,
                W] (padded to the batch's input size).
            mask_fn: instead of "pred_masks": `mask_fn(batch [P], query [P]) -> [P, h4, w4]`, the
                mask logits of the matched entries only. Matching reads no masks, so the model can
                compute the masks after it (VisTR's `matched_slot_masks`) and skip the unmatched
                slots.
        Returns:
            weighted losses.
        """
        # N_b counts every (track, frame) entry, absent frames included (as the official code)
        num_entries = sum(t["labels"].numel() for t in targets)
        normalizer = torch.as_tensor(
            [num_entries], dtype=torch.float, device=outputs["pred_logits"].device
        )
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(normalizer)
        normalizer = torch.clamp(normalizer / comm.get_world_size(), min=1).item()

        indices = self.matcher(outputs, targets)
        losses = {}
        losses.update(self.loss_labels(outputs, targets, indices))
        losses.update(self.loss_boxes(outputs, targets, indices, normalizer))
        if mask_fn is not None or "pred_masks" in outputs:
            losses.update(self.loss_masks(outputs, targets, indices, normalizer, mask_fn))
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_indices = self.matcher(aux, targets)
            aux_losses = self.loss_labels(aux, targets, aux_indices)
            aux_losses.update(self.loss_boxes(aux, targets, aux_indices, normalizer))
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return {
            k: v * self.weight_dict[k.rsplit("_", 1)[0] if k[-1].isdigit() else k]
            for k, v in losses.items()
        }
