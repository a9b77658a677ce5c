"""Mask2Former pieces: head shapes and parameter counts, the cheap frame-query path, the
point-sampled matcher and the criterion."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.projects.point_rend.point_features import point_sample

from vis_zoo.modeling.mask2former import (
    Mask2FormerCriterion,
    Mask2FormerHead,
    MSDeformAttnPixelDecoder,
    MultiScaleMaskedTransformerDecoder,
    PointHungarianMatcher,
)
from vis_zoo.modeling.mask2former.matcher import pairwise_point_costs

R50_SHAPES = {
    "res2": ShapeSpec(channels=256, stride=4),
    "res3": ShapeSpec(channels=512, stride=8),
    "res4": ShapeSpec(channels=1024, stride=16),
    "res5": ShapeSpec(channels=2048, stride=32),
}
TINY_SHAPES = {
    "res2": ShapeSpec(channels=8, stride=4),
    "res3": ShapeSpec(channels=16, stride=8),
    "res4": ShapeSpec(channels=16, stride=16),
    "res5": ShapeSpec(channels=32, stride=32),
}


def tiny_head(num_classes=3, queries=6, dec_layers=4):
    torch.manual_seed(0)
    pd = MSDeformAttnPixelDecoder(
        TINY_SHAPES,
        transformer_nheads=4,
        transformer_dim_feedforward=32,
        transformer_enc_layers=1,
        conv_dim=32,
        mask_dim=32,
    )
    dec = MultiScaleMaskedTransformerDecoder(
        in_channels=32,
        num_classes=num_classes,
        hidden_dim=32,
        num_queries=queries,
        nheads=4,
        dim_feedforward=64,
        dec_layers=dec_layers,
        mask_dim=32,
    )
    return Mask2FormerHead(pixel_decoder=pd, predictor=dec, num_classes=num_classes)


def tiny_features(n=2, h=64, w=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(n, s.channels, h // s.stride, w // s.stride, generator=g)
        for k, s in TINY_SHAPES.items()
    }


def test_official_r50_parameter_counts():
    assert sum(p.numel() for p in MSDeformAttnPixelDecoder(R50_SHAPES).parameters()) == 6_035_904
    dec = MultiScaleMaskedTransformerDecoder(num_classes=40)
    assert sum(p.numel() for p in dec.parameters()) == 14_469_161
    assert dec.num_layers == 9


def test_head_outputs_and_frame_queries():
    head = tiny_head()
    out = head(tiny_features(), num_frame_query_layers=2)
    assert out["pred_logits"].shape == (2, 6, 4)
    assert out["pred_masks"].shape == (2, 6, 16, 24)
    assert len(out["aux_outputs"]) == 3  # initial queries + 2 of the 3 layers
    assert out["frame_queries"].shape == (2, 2, 6, 32)
    assert out["pixel_features"].shape == (2, 32, 16, 24)
    # frame queries are the decoder_norm'ed outputs: the class head applied to them gives the logits
    torch.testing.assert_close(
        head.predictor.class_embed(out["frame_queries"][-1]), out["pred_logits"]
    )
    torch.testing.assert_close(
        head.predictor.class_embed(out["frame_queries"][0]), out["aux_outputs"][-1]["pred_logits"]
    )


@pytest.mark.parametrize("layers", [1, 3, 4])
def test_forward_queries_equals_full_forward(layers):
    """The inference path (attention masks from level-size mask features) gives the same queries."""
    head = tiny_head().eval()
    feats = tiny_features(seed=3)
    with torch.no_grad():
        full = head(feats, num_frame_query_layers=layers)
        cheap = head.forward_queries(feats, num_frame_query_layers=layers)
    torch.testing.assert_close(cheap["frame_queries"], full["frame_queries"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cheap["pred_logits"], full["pred_logits"], atol=1e-5, rtol=1e-5)


def test_attention_mask_blocks_background_and_unblocks_empty_rows():
    dec = tiny_head().predictor
    logits = torch.tensor(
        [[[[2.0, -2.0], [-1.0, 3.0]], [[-5.0, -5.0], [-5.0, -5.0]]]]
    )  # [1, 2, 2, 2]
    mask = dec._attn_mask_from_logits(logits)
    assert mask.shape == (4, 2, 4)  # heads folded into the batch
    assert mask[0, 0].tolist() == [False, True, True, False]
    assert mask[0, 1].all()  # all background -> fully blocked before the layer's fix-up
    # the layer unblocks such rows instead of producing NaNs
    src, pos, _ = dec._memory(
        [torch.randn(1, 32, 2, 2), torch.randn(1, 32, 2, 2), torch.randn(1, 32, 2, 2)]
    )
    out, qpos = dec._initial_queries(1)
    out = out[:2]
    qpos = qpos[:2]  # noqa: E702
    y = dec._layer(0, out, src, pos, mask.clone(), qpos)
    assert torch.isfinite(y).all()


def test_matcher_batched_equals_one_by_one_and_empty_targets():
    g = torch.Generator().manual_seed(0)
    matcher = PointHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    logits = torch.randn(3, 7, 5, generator=g)
    masks = torch.randn(3, 7, 2, 8, 8, generator=g)  # clip masks: 2 frames
    targets = [
        {
            "labels": torch.tensor([1, 3]),
            "masks": (torch.rand(2, 2, 32, 32, generator=g) > 0.5).float(),
        },
        {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 2, 32, 32)},
        {
            "labels": torch.tensor([0, 2, 4]),
            "masks": (torch.rand(3, 2, 32, 32, generator=g) > 0.5).float(),
        },
    ]
    coords = [torch.rand(64, 2, generator=g) for _ in range(3)]
    batched = matcher({"pred_logits": logits, "pred_masks": masks}, targets, coords)
    for i in range(3):
        single = matcher(
            {"pred_logits": logits[i : i + 1], "pred_masks": masks[i : i + 1]},
            [targets[i]],
            [coords[i]],
        )
        assert torch.equal(batched[i][0], single[0][0]) and torch.equal(batched[i][1], single[0][1])
    assert len(batched[1][0]) == 0 and len(batched[0][0]) == 2 and len(batched[2][0]) == 3
    # the assignment is the brute-force optimum of the documented cost
    cost = matcher.cost_matrix(
        logits[2], masks[2], targets[2]["labels"], targets[2]["masks"], coords[2]
    )
    best = min(
        (cost[a, 0] + cost[b, 1] + cost[c, 2]).item()
        for a in range(7)
        for b in range(7)
        for c in range(7)
        if len({a, b, c}) == 3
    )
    rows, cols = batched[2]
    assert cost[rows, cols].sum().item() == pytest.approx(best, abs=1e-5)


def test_pairwise_point_costs_match_definitions():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 20, generator=g)
    tgt = (torch.rand(2, 20, generator=g) > 0.5).float()
    bce, dice = pairwise_point_costs(pred, tgt)
    for q in range(3):
        for t in range(2):
            ref_bce = F.binary_cross_entropy_with_logits(pred[q], tgt[t])
            s = pred[q].sigmoid()
            ref_dice = 1 - (2 * (s * tgt[t]).sum() + 1) / (s.sum() + tgt[t].sum() + 1)
            assert bce[q, t].item() == pytest.approx(ref_bce.item(), abs=1e-5)
            assert dice[q, t].item() == pytest.approx(ref_dice.item(), abs=1e-5)


def test_clip_matcher_reads_every_frame_at_the_same_points():
    """A clip mask's cost equals the cost on the frames' point values concatenated."""
    g = torch.Generator().manual_seed(2)
    matcher = PointHungarianMatcher(cost_class=0.0, cost_mask=1.0, cost_dice=0.0, num_points=16)
    pred = torch.randn(2, 3, 8, 8, generator=g)
    tgt = (torch.rand(1, 3, 16, 16, generator=g) > 0.5).float()
    coords = torch.rand(16, 2, generator=g)
    cost = matcher.cost_matrix(torch.zeros(2, 2), pred, torch.tensor([0]), tgt, coords)
    pp = torch.cat(
        [
            point_sample(pred[:, t : t + 1], coords[None].expand(2, -1, -1), align_corners=False)[
                :, 0
            ]
            for t in range(3)
        ],
        1,
    )
    tp = torch.cat(
        [
            point_sample(tgt[:, t : t + 1], coords[None].expand(1, -1, -1), align_corners=False)[
                :, 0
            ]
            for t in range(3)
        ],
        1,
    )
    ref = F.binary_cross_entropy_with_logits(pp, tp.expand(2, -1), reduction="none").mean(1)
    torch.testing.assert_close(cost[:, 0], ref)


def _criterion(num_indices=2):
    matcher = PointHungarianMatcher(num_points=256)
    return Mask2FormerCriterion(
        num_classes=3,
        matcher=matcher,
        weight_dict={"loss_ce": 2.0},
        eos_coef=0.1,
        num_points=256,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        num_indices_to_return=num_indices,
    )


def test_criterion_keys_indices_and_empty_targets():
    torch.manual_seed(0)
    head = tiny_head()
    out = head(tiny_features())
    masks = torch.zeros(2, 64, 96)
    masks[0, 10:30, 10:40] = 1
    masks[1, 30:60, 50:90] = 1
    targets = [
        {"labels": torch.tensor([0, 2]), "masks": masks},
        {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 64, 96)},
    ]
    losses, indices = _criterion(2)(out, targets)
    expected = {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1", "_2")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(indices) == 2 and len(indices[-1]) == 2 and len(indices[-1][1][0]) == 0
    sum(losses.values()).backward()
    assert head.predictor.query_feat.weight.grad.abs().sum() > 0


def test_criterion_mask_loss_prefers_the_right_mask():
    crit = _criterion(1)
    tgt = torch.zeros(1, 32, 32)
    tgt[0, 8:24, 8:24] = 1
    good = F.interpolate(tgt[None] * 20 - 10, size=(8, 8), mode="bilinear", align_corners=False)[0]
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :, 0] = 5.0
    outputs = {"pred_logits": logits, "pred_masks": torch.cat([good, -good, -good, -good])[None]}
    torch.manual_seed(0)
    losses, indices = crit(outputs, [{"labels": torch.tensor([0]), "masks": tgt}])
    assert indices[-1][0][0].tolist() == [0]
    assert losses["loss_dice"] < 0.2 and losses["loss_mask"] < 0.2
    outputs["pred_masks"] = (-good).expand(4, -1, -1)[None]  # every prediction is the complement
    bad, _ = crit(outputs, [{"labels": torch.tensor([0]), "masks": tgt}])
    assert bad["loss_dice"] > 0.5
