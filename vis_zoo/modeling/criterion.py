"""Set criterion for clip-level mask prediction (class + sigmoid focal + dice over the clip
volume)."""

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor, nn

from .losses import dice_loss, sigmoid_focal_loss


def num_masks_normalizer(targets: Sequence[dict], device: torch.device) -> float:
    """N_m: GT instances in the batch, summed over workers and averaged, at least 1."""
    num = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    world = comm.get_world_size()
    if world > 1:
        torch.distributed.all_reduce(num)
    return torch.clamp(num / world, min=1).item()


def src_permutation_idx(indices: Sequence[Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:
    """(video index, query index) of every matched prediction, video-major."""
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    return batch_idx, src_idx


class ClipMaskSetCriterion(nn.Module):
    """DETR-style set loss for methods that predict one class and T masks per query.

    Losses (unweighted; the caller multiplies by its weight dict):
      "loss_ce":   softmax CE over Q queries x (K+1) classes, no-object weight `eos_coef`, mean
                   weighted by class weights (``F.cross_entropy`` with ``weight``).
      "loss_mask": sigmoid focal over the matched prediction's clip volume (bilinearly resized to
                   the target's size), mean over pixels, summed / N_m.
      "loss_dice": dice over the clip volume, summed / N_m.
    With ``aux_outputs`` in the outputs, matching and all losses are repeated per auxiliary layer
    with suffix ``_{i}``. ``log_*`` entries are detached statistics, not losses.

    forward(outputs, targets):
        outputs: {"pred_logits": [B, Q, K+1], "pred_masks": [B, Q, T, h, w], "aux_outputs": [...]}
        targets: per video {"labels": [G], "masks": [G, T, H, W] float soft targets, + matcher keys}
    """

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        eos_coef: float,
        losses: Sequence[str] = ("labels", "masks"),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        logits = outputs["pred_logits"]
        idx = src_permutation_idx(indices)
        matched_classes = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(
            logits.device
        )
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        target_classes[idx] = matched_classes
        loss = F.cross_entropy(
            logits.transpose(1, 2), target_classes, self.empty_weight.to(logits.dtype)
        )
        out = {"loss_ce": loss}
        with torch.no_grad():
            if matched_classes.numel():
                acc = (logits[idx].argmax(-1) == matched_classes).float().mean() * 100
                out["log_class_error"] = 100 - acc
            num_pred = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()
            num_gt = torch.as_tensor(
                [float(len(t["labels"])) for t in targets], device=logits.device
            )
            out["log_cardinality_error"] = F.l1_loss(num_pred, num_gt)
        return out

    def loss_masks(self, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        idx = src_permutation_idx(indices)
        src_masks = outputs["pred_masks"][idx]  # [n, T, h, w]
        target_masks = [t["masks"][j] for t, (_, j) in zip(targets, indices)]
        target_masks = torch.cat(target_masks).to(src_masks)
        if src_masks.shape[0] == 0:
            zero = outputs["pred_masks"].sum() * 0.0  # keeps the graph: DDP needs every output used
            return {"loss_mask": zero, "loss_dice": zero}
        if src_masks.shape[-2:] != target_masks.shape[-2:]:
            src_masks = F.interpolate(
                src_masks, size=target_masks.shape[-2:], mode="bilinear", align_corners=False
            )
        src_masks = src_masks.flatten(1)
        target_masks = target_masks.flatten(1)
        return {
            "loss_mask": sigmoid_focal_loss(
                src_masks, target_masks, num_masks, self.focal_alpha, self.focal_gamma
            ),
            "loss_dice": dice_loss(src_masks, target_masks, num_masks),
        }

    def get_loss(self, name, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        loss_map = {"labels": self.loss_labels, "masks": self.loss_masks}
        if name not in loss_map:
            raise KeyError(
                f"ClipMaskSetCriterion: unknown loss {name!r}; known: {sorted(loss_map)}"
            )
        return loss_map[name](outputs, targets, indices, num_masks)

    def forward(self, outputs: Dict, targets: Sequence[dict]) -> Dict[str, Tensor]:
        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        indices = self.matcher(main, targets)
        num_masks = num_masks_normalizer(targets, main["pred_logits"].device)
        losses: Dict[str, Tensor] = {}
        for name in self.losses:
            losses.update(self.get_loss(name, main, targets, indices, num_masks))
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_indices = self.matcher(aux, targets)
            for name in self.losses:
                for k, v in self.get_loss(name, aux, targets, aux_indices, num_masks).items():
                    if not k.startswith("log_"):  # statistics are logged for the last layer only
                        losses[f"{k}_{i}"] = v
        return losses
