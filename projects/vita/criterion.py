"""VITA's video-level losses: Hungarian-matched CE + point-sampled BCE/dice over the clip, for every
VITA input layer (L) and decoder output (D), and the similarity loss (VITA paper, Sec. 3.4;
sukjunhwang/VITA @ 59c24ad, vita/modeling/vita_criterion.py)."""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vis_zoo.modeling.criterion import num_masks_normalizer, src_permutation_idx
from vis_zoo.modeling.mask2former.criterion import MatchedMaskLosses

__all__ = ["VitaCriterion"]


class VitaCriterion(MatchedMaskLosses):
    """forward(outputs, clip_targets, frame_targets, frame_indices) -> unweighted loss dict.

    outputs: VITA module outputs with "pred_masks" [L, B, cQ, T, h, w] added (also in aux_outputs).
    clip_targets: B dicts: "labels" [G], "ids" [G, T] (-1 where absent), "masks" [G, T, H, W].
    frame_targets: B*T dicts (video-major): "labels", "ids", "masks" [G_t, H, W].
    frame_indices: L lists of B*T frame matchings (from the frame criterion, oldest layer first).
    Keys: loss_vita_ce / _mask / _dice (+ `_i` for aux decoder layer i), loss_vita_sim (last layer).
    """

    def __init__(
        self,
        *,
        sim_weight: float = 0.5,
        sim_use_clip: bool = True,
        sim_id_multiplier: int = 1000,
        **matched_mask_losses,
    ):
        """`matched_mask_losses`: the keyword arguments of `MatchedMaskLosses` (num_classes,
        matcher, weight_dict, eos_coef, point sampling)."""
        super().__init__(**matched_mask_losses)
        self.use_sim = sim_weight > 0.0
        self.sim_use_clip = sim_use_clip
        self.sim_id_multiplier = sim_id_multiplier

    # ----------------------------------------------------------------- matching
    def match(self, outputs: Dict[str, Tensor], clip_targets: Sequence[dict]):
        """Matchings of the L*B (layer, video) pairs, layer-major; targets replicated per layer."""
        logits = outputs["pred_logits"]
        num_l, b = logits.shape[:2]
        flat = {
            "pred_logits": logits.flatten(0, 1),
            "pred_masks": outputs["pred_masks"].flatten(0, 1),
        }
        return self.matcher(flat, list(clip_targets) * num_l)

    # ----------------------------------------------------------------- losses
    def loss_labels(self, outputs, clip_targets, indices) -> Tensor:
        """CE of the L*B (layer, video) prediction sets, layer-major; targets replicated per
        layer."""
        logits = outputs["pred_logits"]  # [L, B, cQ, K+1]
        return super().loss_labels(
            logits.flatten(0, 1), list(clip_targets) * logits.shape[0], indices
        )

    def loss_masks(self, outputs, clip_targets, indices, num_masks: float) -> Tuple[Tensor, Tensor]:
        """Clip-mask losses of the L*B prediction sets: points are chosen per frame-mask, then each
        instance's T point sets form one vector."""
        masks = outputs["pred_masks"]  # [L, B, cQ, T, h, w]
        return super().loss_masks(
            masks.flatten(0, 1), list(clip_targets) * masks.shape[0], indices, num_masks
        )

    def loss_sim(self, outputs, clip_targets, frame_targets, clip_indices, frame_indices) -> Tensor:
        """BCE on dot products of matched frame/video query embeddings, within (layer, video)
        groups."""
        fq_embed = outputs["pred_fq_embed"]  # [L, B, T, fQ, C]
        num_l, b, t = fq_embed.shape[:3]
        device = fq_embed.device
        embeds, ids, groups = [], [], []

        flat_frame_indices = [
            pair for layer in frame_indices for pair in layer
        ]  # L*B*T, layer-major
        f_batch, f_src = src_permutation_idx(flat_frame_indices)
        src_fq = fq_embed.flatten(0, 2)[f_batch, f_src]  # [Nf, C]
        f_ids = (
            torch.cat(
                [
                    tgt["ids"][j]
                    for tgt, (_, j) in zip(list(frame_targets) * num_l, flat_frame_indices)
                ]
            ).to(device)
            if len(f_batch)
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        f_group = torch.div(f_batch.to(device), t, rounding_mode="floor")  # = layer * B + video
        valid = f_ids != -1
        embeds.append(src_fq[valid])
        ids.append(f_ids[valid] + f_group[valid] * self.sim_id_multiplier)
        groups.append(f_group[valid])

        if self.sim_use_clip:
            cq_embed = outputs["pred_cq_embed"].flatten(0, 1)  # [L*B, cQ, C]
            c_batch, c_src = src_permutation_idx(clip_indices)
            src_cq = cq_embed[c_batch, c_src]
            if len(c_batch):
                c_ids = (
                    torch.cat(
                        [
                            tgt["ids"][j]
                            for tgt, (_, j) in zip(list(clip_targets) * num_l, clip_indices)
                        ]
                    )
                    .to(device)
                    .amax(dim=1)
                )
            else:
                c_ids = torch.zeros(0, dtype=torch.long, device=device)
            c_group = c_batch.to(device)
            valid = c_ids != -1
            embeds.append(src_cq[valid])
            ids.append(c_ids[valid] + c_group[valid] * self.sim_id_multiplier)
            groups.append(c_group[valid])

        embeds = torch.cat(embeds)
        ids = torch.cat(ids)
        groups = torch.cat(groups)
        logits = embeds @ embeds.t()
        target = (ids[:, None] == ids[None]).to(logits.dtype)
        same_group = (groups[:, None] == groups[None]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * same_group
        # keeps the graph connected (zero loss) when there is no matched foreground at all
        return loss.sum() / (same_group.sum() + 1e-6) + fq_embed.sum() * 0.0

    def _set_losses(self, outputs, clip_targets, num_masks: float, suffix: str):
        indices = self.match(outputs, clip_targets)
        loss_mask, loss_dice = self.loss_masks(outputs, clip_targets, indices, num_masks)
        losses = {
            "loss_vita_ce" + suffix: self.loss_labels(outputs, clip_targets, indices),
            "loss_vita_mask" + suffix: loss_mask,
            "loss_vita_dice" + suffix: loss_dice,
        }
        return losses, indices

    def forward(
        self,
        outputs: Dict,
        clip_targets: Sequence[dict],
        frame_targets: Sequence[dict],
        frame_indices: List,
    ) -> Dict[str, Tensor]:
        num_l = outputs["pred_logits"].shape[0]
        # N_masks = clip GT instances x L (each VITA input layer is a separate batch element)
        num_masks = num_masks_normalizer(list(clip_targets) * num_l, outputs["pred_logits"].device)
        losses, clip_indices = self._set_losses(outputs, clip_targets, num_masks, "")
        if self.use_sim:
            losses["loss_vita_sim"] = self.loss_sim(
                outputs, clip_targets, frame_targets, clip_indices, frame_indices
            )
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            l_dict, _ = self._set_losses(aux, clip_targets, num_masks, f"_{i}")
            losses.update(l_dict)
        return losses
