"""VisTR's sequence matcher and criterion."""

import torch

from vis_zoo_projects.vistr.box_ops import box_cxcywh_to_xyxy
from vis_zoo_projects.vistr.criterion import VisTRCriterion
from vis_zoo_projects.vistr.matcher import VisTRSequenceMatcher

T, N, K = 3, 4, 5  # frames, slots, classes (logits: K + 2)


def _random_targets(g, num_tracks, absent=()):
    labels = torch.randint(1, K + 1, (num_tracks, 1), generator=g).repeat(1, T)
    centers = torch.rand(num_tracks, T, 2, generator=g) * 0.6 + 0.2
    sizes = torch.rand(num_tracks, T, 2, generator=g) * 0.2 + 0.05
    boxes = torch.cat([centers, sizes], -1)
    valid = torch.ones(num_tracks, T, dtype=torch.bool)
    for j, t in absent:
        valid[j, t] = False
    labels = labels * valid
    boxes = boxes * valid[..., None]
    masks = torch.rand(num_tracks, T, 16, 24, generator=g) > 0.5
    return {
        "labels": labels,
        "boxes": boxes,
        "valid": valid,
        "masks": masks & valid[..., None, None],
    }


def _outputs(g, bs):
    return {
        "pred_logits": torch.randn(bs, T * N, K + 2, generator=g),
        "pred_boxes": torch.rand(bs, T * N, 4, generator=g) * 0.5 + 0.1,
        "pred_masks": torch.randn(bs, T * N, 4, 6, generator=g),
    }


def _reference_cost(logits, boxes, tgt):
    """The official cost written as plain loops: 1·class + 5·L1 + 2·(−IoU), frame-averaged."""
    prob = logits.softmax(-1)
    m = tgt["labels"].shape[0]
    cost = torch.zeros(N, m)
    for i in range(N):
        for j in range(m):
            c_cls = c_l1 = c_iou = 0.0
            for t in range(T):
                q = t * N + i
                c_cls -= prob[q, tgt["labels"][j, t]] / T
                c_l1 += (boxes[q] - tgt["boxes"][j, t]).abs().mean() / T
                a, b = box_cxcywh_to_xyxy(boxes[q]), box_cxcywh_to_xyxy(tgt["boxes"][j, t])
                inter = ((torch.min(a[2:], b[2:]) - torch.max(a[:2], b[:2])).clamp(min=0)).prod()
                union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
                c_iou -= (inter + 1e-6) / (union + 1e-6) / T
            cost[i, j] = c_cls + 5 * c_l1 + 2 * c_iou
    return cost


def test_cost_matches_reference_loops():
    g = torch.Generator().manual_seed(0)
    matcher = VisTRSequenceMatcher(num_frames=T, num_slots=N)
    targets = [_random_targets(g, 3, absent=[(1, 2)])]
    out = _outputs(g, 1)
    cost = matcher.cost_matrices(out["pred_logits"], out["pred_boxes"], targets)[0]
    torch.testing.assert_close(
        cost, _reference_cost(out["pred_logits"][0], out["pred_boxes"][0], targets[0])
    )


def test_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(1)
    matcher = VisTRSequenceMatcher(num_frames=T, num_slots=N)
    targets = [
        _random_targets(g, 3),
        _random_targets(g, 0),
        _random_targets(g, 6, absent=[(0, 0), (5, 1)]),
    ]
    out = _outputs(g, 3)
    batched = matcher(out, targets)
    for b, tgt in enumerate(targets):
        single = matcher({k: v[b : b + 1] for k, v in out.items()}, [tgt])[0]
        for x, y in zip(batched[b], single):
            assert torch.equal(x, y)
    # 6 tracks for 4 slots: only 4 tracks matched, each with its valid frames
    q, j, f = batched[2]
    assert len(set(j.tolist())) == N
    assert len(q) == int(targets[2]["valid"][j.unique()].sum())


def test_absent_frames_stay_unmatched_and_are_no_object():
    """Track 1 is absent at frame 1: its slot is matched at frames 0 and 2 only."""
    g = torch.Generator().manual_seed(2)
    tgt = _random_targets(g, 2, absent=[(1, 1)])
    out = _outputs(g, 1)
    # make slot 3 predict track 1's boxes exactly, slot 0 track 0's
    for t in range(T):
        out["pred_boxes"][0, t * N + 3] = (
            tgt["boxes"][1, t] if t != 1 else torch.tensor([0.5, 0.5, 0.1, 0.1])
        )
        out["pred_boxes"][0, t * N + 0] = tgt["boxes"][0, t]
    q, j, f = VisTRSequenceMatcher(num_frames=T, num_slots=N)(out, [tgt])[0]
    pairs = sorted(zip(q.tolist(), j.tolist(), f.tolist()))
    assert pairs == sorted(
        [
            (0 * N + 0, 0, 0),
            (1 * N + 0, 0, 1),
            (2 * N + 0, 0, 2),
            (0 * N + 3, 1, 0),
            (2 * N + 3, 1, 2),
        ]
    )
    assert all(qq == ff * N + (0 if jj == 0 else 3) for qq, jj, ff in pairs)

    criterion = VisTRCriterion(
        num_classes=K,
        matcher=VisTRSequenceMatcher(num_frames=T, num_slots=N),
        weight_dict={"loss_ce": 1, "loss_bbox": 1, "loss_giou": 1, "loss_mask": 1, "loss_dice": 1},
        eos_coef=0.1,
    )
    # the CE target of query (frame 1, slot 3) is no-object: predicting no-object there lowers the
    # loss
    base = criterion(out, [tgt])["loss_ce"]
    out["pred_logits"][0, 1 * N + 3] = 0.0
    out["pred_logits"][0, 1 * N + 3, K + 1] = 20.0
    assert criterion(out, [tgt])["loss_ce"] < base


def test_criterion_normaliser_counts_absent_frames_and_empty_targets():
    g = torch.Generator().manual_seed(3)
    criterion = VisTRCriterion(
        num_classes=K,
        matcher=VisTRSequenceMatcher(num_frames=T, num_slots=N),
        weight_dict={"loss_ce": 1, "loss_bbox": 5, "loss_giou": 2, "loss_mask": 1, "loss_dice": 1},
        eos_coef=0.1,
    )
    out = _outputs(g, 1)
    tgt = _random_targets(g, 2)
    full = criterion(out, [tgt])
    # the same track set with one frame marked absent: the normaliser stays N_inst·T = 6, so the
    # L1 sum over 5 matched pairs is divided by 6, not 5
    q, j, f = criterion.matcher(out, [tgt])[0]
    l1 = sum(
        (out["pred_boxes"][0, qq] - tgt["boxes"][jj, ff]).abs().sum() for qq, jj, ff in zip(q, j, f)
    )
    torch.testing.assert_close(full["loss_bbox"], 5 * l1 / 6)
    # no targets: everything is no-object, box/mask losses are zero but connected to the graph
    out = {k: v.clone().requires_grad_(True) for k, v in _outputs(g, 1).items()}
    empty = {
        "labels": torch.zeros(0, T, dtype=torch.long),
        "boxes": torch.zeros(0, T, 4),
        "valid": torch.zeros(0, T, dtype=torch.bool),
        "masks": torch.zeros(0, T, 16, 24, dtype=torch.bool),
    }
    losses = criterion(out, [empty])
    assert (
        losses["loss_bbox"].item() == 0
        and losses["loss_mask"].item() == 0
        and losses["loss_ce"].item() > 0
    )
    sum(losses.values()).backward()
    assert out["pred_masks"].grad is not None and out["pred_boxes"].grad is not None
