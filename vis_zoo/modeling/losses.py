"""Mask losses and pairwise mask costs shared by the set-prediction methods.

All functions take mask *logits* and (possibly soft) targets in [0, 1], flattened per instance:
``[N, P]`` where P is every pixel of the instance's clip (T*h*w for clip-level methods, h*w for
per-frame ones). ``num_masks`` is the loss normaliser N_m (number of GT instances in the batch,
averaged over workers, at least 1).
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, num_masks: float, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """RetinaNet focal loss, mean over pixels, summed over instances, divided by `num_masks`.

    Args:
        logits, targets: [N, P] (targets may be soft).
    Returns:
        scalar.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def sigmoid_ce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Binary cross-entropy, mean over pixels, summed over instances / `num_masks`. [N, P] ->
    scalar."""
    return (
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum()
        / num_masks
    )


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """1 - (2*sum(p*t) + 1) / (sum(p) + sum(t) + 1) per instance (p = sigmoid), summed /
    `num_masks`.

    Args:
        logits, targets: [N, P].
    """
    prob = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (prob * targets).sum(1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def pairwise_dice_coefficient(logits: Tensor, targets: Tensor) -> Tensor:
    """Dice *coefficient* (higher is better) of every prediction against every target.

    Args:
        logits: [Q, P] prediction logits. targets: [G, P] (soft) targets.
    Returns:
        [Q, G] with (2*sum(p*t) + 1) / (sum(p) + sum(t) + 1).
    """
    prob = logits.sigmoid().flatten(1)
    targets = targets.flatten(1).to(prob.dtype)
    numerator = 2 * prob @ targets.t()
    denominator = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_focal_cost(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    chunk_size: Optional[int] = None,
) -> Tensor:
    """Focal loss (mean over pixels) of every prediction against every target.

    Exact for soft targets (the focal modulation is not linear in the target, so no matmul
    shortcut); targets are processed `chunk_size` at a time to bound the [Q, chunk, P] temporary.

    Args:
        logits: [Q, P]. targets: [G, P].
    Returns:
        [Q, G] (lower is better).
    """
    logits = logits.flatten(1)
    targets = targets.flatten(1).to(logits.dtype)
    num_q, num_g = logits.shape[0], targets.shape[0]
    if num_g == 0:
        return logits.new_zeros((num_q, 0))
    if chunk_size is None:
        # keep the temporary around 32M elements
        chunk_size = max(1, int(32e6 // max(1, num_q * logits.shape[1])))
    prob = logits.sigmoid()[:, None]
    out = []
    for start in range(0, num_g, chunk_size):
        tgt = targets[None, start : start + chunk_size]
        lg = logits[:, None].expand(-1, tgt.shape[1], -1)
        ce = F.binary_cross_entropy_with_logits(lg, tgt.expand(num_q, -1, -1), reduction="none")
        p_t = prob * tgt + (1 - prob) * (1 - tgt)
        cost = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            cost = (alpha * tgt + (1 - alpha) * (1 - tgt)) * cost
        out.append(cost.mean(2))
    return torch.cat(out, dim=1)
