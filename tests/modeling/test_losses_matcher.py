import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from vis_zoo.modeling import (
    ClipMaskSetCriterion,
    MaskHungarianMatcher,
    dice_loss,
    pairwise_dice_coefficient,
    pairwise_sigmoid_focal_cost,
    sigmoid_focal_loss,
)


def _focal_reference(logit, target, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logit)
    ce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    return ((alpha * target + (1 - alpha) * (1 - target)) * ce * (1 - p_t) ** gamma).mean()


def test_focal_and_dice_losses_match_definitions_and_normaliser():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=g)
    targets = torch.rand(3, 50, generator=g)
    expected = sum(_focal_reference(logits[i], targets[i]) for i in range(3)) / 2.0
    assert torch.allclose(sigmoid_focal_loss(logits, targets, 2.0), expected, atol=1e-6)
    p = logits.sigmoid()
    dice = 1 - (2 * (p * targets).sum(1) + 1) / (p.sum(1) + targets.sum(1) + 1)
    assert torch.allclose(dice_loss(logits, targets, 3.0), dice.sum() / 3.0, atol=1e-6)


def test_pairwise_costs_equal_elementwise():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 30, generator=g)
    targets = (torch.rand(3, 30, generator=g) > 0.5).float()
    coef = pairwise_dice_coefficient(logits, targets)
    focal = pairwise_sigmoid_focal_cost(logits, targets, chunk_size=2)
    for q in range(4):
        for j in range(3):
            p = logits[q].sigmoid()
            ref = (2 * (p * targets[j]).sum() + 1) / (p.sum() + targets[j].sum() + 1)
            assert torch.allclose(coef[q, j], ref, atol=1e-6)
            assert torch.allclose(focal[q, j], _focal_reference(logits[q], targets[j]), atol=1e-6)


def _outputs_and_targets(seed=0, num_videos=3, queries=6, frames=3, classes=4):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(num_videos, queries, classes + 1, generator=g),
        "pred_masks": torch.randn(num_videos, queries, frames, 6, 8, generator=g),
    }
    targets = []
    for b, num in enumerate([2, 0, 3][:num_videos]):
        masks = (torch.rand(num, frames, 12, 16, generator=g) > 0.6).float()
        if num:
            masks[0, 1] = 0  # track absent in frame 1
        targets.append(
            {
                "labels": torch.randint(0, classes, (num,), generator=g),
                "match_masks": masks,
                "masks": masks,
            }
        )
    return outputs, targets


def test_matcher_batched_equals_one_by_one_and_ifc_form():
    outputs, targets = _outputs_and_targets()
    matcher = MaskHungarianMatcher(cost_class=1.0, cost_dice=3.0)
    batched = matcher(outputs, targets)
    for b, target in enumerate(targets):
        single = matcher({k: v[b : b + 1] for k, v in outputs.items()}, [target])[0]
        assert torch.equal(batched[b][0], single[0]) and torch.equal(batched[b][1], single[1])
        # IFC's form: maximise 3 * dice_coef + p(class) over the whole clip volume
        if len(target["labels"]):
            up = F.interpolate(
                outputs["pred_masks"][b], size=(12, 16), mode="bilinear", align_corners=False
            )
            gain = (
                3 * pairwise_dice_coefficient(up.flatten(1), target["match_masks"].flatten(1))
                + outputs["pred_logits"][b].softmax(-1)[:, target["labels"]]
            )
            rows, cols = linear_sum_assignment(gain.numpy(), maximize=True)
            assert (
                rows.tolist() == batched[b][0].tolist() and cols.tolist() == batched[b][1].tolist()
            )
    assert len(batched[1][0]) == 0 and batched[1][0].dtype == torch.int64
    assert [len(i) for i, _ in batched] == [2, 0, 3]


def test_matcher_all_targets_empty():
    outputs, targets = _outputs_and_targets()
    for t in targets:
        t["labels"] = t["labels"][:0]
        t["match_masks"] = t["match_masks"][:0]
    indices = MaskHungarianMatcher()(outputs, targets)
    assert all(len(i) == 0 and len(j) == 0 for i, j in indices)


def test_matcher_uses_focal_term_when_asked():
    outputs, targets = _outputs_and_targets(seed=3)
    costs_plain = MaskHungarianMatcher(cost_class=1.0, cost_dice=1.0).cost_matrices(
        outputs, targets
    )
    costs_focal = MaskHungarianMatcher(cost_class=1.0, cost_dice=1.0, cost_focal=5.0).cost_matrices(
        outputs, targets
    )
    assert not torch.allclose(costs_plain[0], costs_focal[0])


def test_criterion_losses_aux_and_empty_targets():
    torch.manual_seed(0)
    outputs, targets = _outputs_and_targets()
    outputs["pred_masks"].requires_grad_(True)
    outputs["aux_outputs"] = [
        {"pred_logits": outputs["pred_logits"] * 0.5, "pred_masks": outputs["pred_masks"] * 2}
    ]
    criterion = ClipMaskSetCriterion(
        num_classes=4, matcher=MaskHungarianMatcher(cost_dice=3.0), eos_coef=0.1
    )
    losses = criterion(outputs, targets)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"} <= set(
        losses
    )
    assert not any(k.endswith("_0") and k.startswith("log_") for k in losses)
    # loss_mask is normalised by the number of GT instances (5), not by instance-frames
    indices = criterion.matcher({k: v for k, v in outputs.items() if k != "aux_outputs"}, targets)
    src = torch.cat(
        [
            F.interpolate(
                outputs["pred_masks"][b][i], size=(12, 16), mode="bilinear", align_corners=False
            )
            for b, (i, _) in enumerate(indices)
        ]
    ).flatten(1)
    tgt = torch.cat([targets[b]["masks"][j] for b, (_, j) in enumerate(indices)]).flatten(1)
    assert torch.allclose(losses["loss_mask"], sigmoid_focal_loss(src, tgt, 5.0), atol=1e-6)
    sum(v for k, v in losses.items() if not k.startswith("log_")).backward()
    assert outputs["pred_masks"].grad is not None

    # no objects anywhere: masks losses are zero but keep the graph
    for t in targets:
        t["labels"], t["masks"], t["match_masks"] = (
            t["labels"][:0],
            t["masks"][:0],
            t["match_masks"][:0],
        )
    empty = criterion({k: v for k, v in outputs.items() if k != "aux_outputs"}, targets)
    assert empty["loss_mask"].item() == 0.0 and empty["loss_mask"].requires_grad
    # all queries are no-object: CE with the no-object weight only
    expected = F.cross_entropy(
        outputs["pred_logits"].transpose(1, 2),
        torch.full((3, 6), 4, dtype=torch.long),
        criterion.empty_weight,
    )
    assert torch.allclose(empty["loss_ce"], expected)


def test_criterion_unknown_loss_name():
    criterion = ClipMaskSetCriterion(
        num_classes=2, matcher=MaskHungarianMatcher(), eos_coef=0.1, losses=("boxes",)
    )
    outputs, targets = _outputs_and_targets(classes=2)
    with pytest.raises(KeyError, match="boxes"):
        criterion(outputs, targets)


def test_non_finite_matching_cost_is_a_clear_error():
    from vis_zoo.modeling.matcher import solve_assignment

    rows, cols = solve_assignment(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]), "TestMatcher")
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1] and rows.dtype == torch.int64
    with pytest.raises(ValueError, match="TestMatcher: 1 of 4 matching costs are NaN/inf"):
        solve_assignment(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), "TestMatcher")
