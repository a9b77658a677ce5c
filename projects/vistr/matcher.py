"""VisTR's instance-sequence Hungarian matching.

Prediction slot i (queries t·N + i for t < T) is matched to a whole ground-truth track j with a cost
averaged over the T frames; the match is then expanded to (query, frame) pairs for the frames where
track j is present. Queries at the other frames stay unmatched (trained as no-object).
"""

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from vis_zoo.modeling.matcher import solve_assignment

from .box_ops import box_cxcywh_to_xyxy, paired_iou


class VisTRSequenceMatcher(nn.Module):
    def __init__(
        self,
        *,
        num_frames: int,
        num_slots: int,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_iou: float = 2.0,
    ):
        """
        Args:
            num_frames: T; num_slots: N instance slots per frame (queries = T·N, frame-major).
            cost_class: weight of −mean_t p(class of track j at t) (class 0 where j is absent).
            cost_bbox: weight of the L1 distance averaged over frames and the 4 coordinates.
            cost_iou: weight of −mean_t IoU (plain IoU, as the official code; not GIoU).
        """
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_iou == 0:
            raise ValueError("VisTRSequenceMatcher: all matching costs are 0")
        self.num_frames = num_frames
        self.num_slots = num_slots
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_iou = cost_iou

    @torch.no_grad()
    def cost_matrices(
        self, pred_logits: Tensor, pred_boxes: Tensor, targets: List[Dict[str, Tensor]]
    ) -> List[Tensor]:
        """Cost [N, M_b] for each video, computed for the whole batch at once (targets padded to the
        largest M; padded columns are dropped before returning).

        pred_logits [B, T·N, K+2], pred_boxes [B, T·N, 4]; targets[b]: "labels" long [M_b, T],
        "boxes" float [M_b, T, 4] (normalised cxcywh, zero where absent).
        """
        bs, num_queries = pred_logits.shape[:2]
        t, n = self.num_frames, self.num_slots
        if num_queries != t * n:
            raise ValueError(
                f"VisTRSequenceMatcher: {num_queries} queries != num_frames {t} × slots {n}"
            )
        sizes = [len(tgt["labels"]) for tgt in targets]
        m = max(sizes + [1])
        labels = pred_logits.new_zeros((bs, m, t), dtype=torch.long)
        boxes = pred_boxes.new_zeros((bs, m, t, 4))
        for b, tgt in enumerate(targets):
            labels[b, : sizes[b]] = tgt["labels"]
            boxes[b, : sizes[b]] = tgt["boxes"]

        prob = pred_logits.softmax(-1).view(bs, t, n, -1)  # [B, T, N, C]
        # p[b, t, i, labels[b, j, t]] -> [B, T, N, M]
        index = labels.permute(0, 2, 1)[:, :, None, :].expand(bs, t, n, m)
        cost_class = -prob.gather(3, index).mean(1)  # [B, N, M]
        out_boxes = pred_boxes.view(bs, t, n, 4).permute(0, 2, 1, 3)[:, :, None]  # [B, N, 1, T, 4]
        tgt_boxes = boxes[:, None]  # [B, 1, M, T, 4]
        cost_bbox = (out_boxes - tgt_boxes).abs().mean((-1, -2))
        cost_iou = -paired_iou(box_cxcywh_to_xyxy(out_boxes), box_cxcywh_to_xyxy(tgt_boxes)).mean(
            -1
        )
        cost = self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_iou * cost_iou
        return [cost[b, :, : sizes[b]] for b in range(bs)]

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """
        Args:
            outputs: "pred_logits" [B, T·N, K+2], "pred_boxes" [B, T·N, 4].
            targets: per video "labels" [M, T], "boxes" [M, T, 4], "valid" bool [M, T].
        Returns:
            per video (query_idx, track_idx, frame_idx), long [P] each: query t·N + i is matched to
            track j at frame t, for every valid frame of every matched track.
        """
        costs = self.cost_matrices(outputs["pred_logits"], outputs["pred_boxes"], targets)
        device = outputs["pred_logits"].device
        indices = []
        for cost, tgt in zip(costs, targets):
            empty = torch.zeros(0, dtype=torch.long, device=device)
            if cost.shape[1] == 0:
                indices.append((empty, empty, empty))
                continue
            slot_ids, track_ids = (
                ids.numpy() for ids in solve_assignment(cost, type(self).__name__)
            )
            q, j, f = [], [], []
            for i, tr in zip(slot_ids.tolist(), track_ids.tolist()):
                frames = tgt["valid"][tr].nonzero().flatten().to(device)
                q.append(frames * self.num_slots + i)
                j.append(torch.full_like(frames, tr))
                f.append(frames)
            indices.append((torch.cat(q), torch.cat(j), torch.cat(f)))
        return indices
