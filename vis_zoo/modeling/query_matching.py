"""Query matching between consecutive frames: the tracker of per-frame query-based detectors.

A query-based image detector (Mask2Former) run on each frame gives Q query embeddings per frame,
but slot q of frame t need not be the object of slot q of frame t-1. Aligning each frame's queries
to the previous frame's by Hungarian matching on cosine similarity turns slots into tracks; this is
MinVIS's tracker (Huang et al., "MinVIS: A Minimal Video Instance Segmentation Framework without
Video-based Training", NeurIPS 2022, Sec. 3.2; NVlabs/MinVIS, `match_from_embds`) and the
frame-to-frame association of methods built on per-frame or per-clip queries.
"""

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["match_queries_to_previous_frame"]


def match_queries_to_previous_frame(previous: Tensor, current: Tensor) -> Tensor:
    """The permutation that aligns the current frame's queries to the previous frame's.

    Hungarian matching on 1 - cosine similarity of the embeddings (MinVIS, Sec. 3.2).

    Args:
        previous: [Q, C] the previous frame's aligned embeddings; current: [Q, C].
    Returns:
        long [Q] `perm` such that current[perm[q]] continues the track of previous[q].
    """
    if previous.shape != current.shape:
        raise ValueError(
            f"query embeddings of consecutive frames differ in shape: {tuple(previous.shape)} "
            f"and {tuple(current.shape)}"
        )
    prev = torch.nn.functional.normalize(previous.float(), dim=-1)
    cur = torch.nn.functional.normalize(current.float(), dim=-1)
    cost = 1.0 - prev @ cur.T  # [previous q, current q'], in [0, 2]
    if not bool(torch.isfinite(cost).all()):
        # A finite model gives finite embeddings at every resolution; NaN/inf here means diverged
        # training or corrupt weights, and any matching of such queries would be meaningless.
        bad = (
            (~torch.isfinite(previous).all(-1)).sum().item(),
            (~torch.isfinite(current).all(-1)).sum().item(),
        )
        raise FloatingPointError(
            f"non-finite query embeddings ({bad[0]} of {len(previous)} queries of the previous "
            f"frame, {bad[1]} of {len(current)} of this frame): the model diverged or its weights "
            "are corrupt"
        )
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(cols, dtype=torch.long)
    return perm.to(current.device)
