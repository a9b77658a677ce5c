"""SeqFormer: training/eval forward on tiny clips, the box matcher, the mask head, the converter and
the
R-50 parameter count."""

import re

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from vis_zoo.modeling.box_matcher import VideoBoxHungarianMatcher
from vis_zoo.modeling.postprocessing import check_video_output
from vis_zoo_projects.seqformer.convert import convert_official_state_dict
from vis_zoo_projects.seqformer.mask_head import aligned_bilinear, dynamic_mask_logits
from vis_zoo_projects.seqformer.transformer import inverse_sigmoid

from tests.projects.seqformer.common import make_clip, tiny_cfg


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(**overrides))


def _test_input(clip):
    video = dict(clip)
    video.pop("instances", None)
    return video


# ---------------------------------------------------------------- training
def test_train_forward_backward_all_layers_and_absent_frames():
    model = _model()
    model.train()
    batch = [
        make_clip(seed=0),
        make_clip(seed=1, height=60, width=90, absent={(1, 0), (0, 2)}, video_id=2),
    ]
    losses = model(batch)
    expected = {"loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice"}
    assert set(losses) == expected | {k + "_0" for k in expected}
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), k
    sum(losses.values()).backward()
    # every trained part gets a gradient (encoder's output_proj_box is unused, as in the official
    # code)
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None and "output_proj_box" not in n
    ]
    assert not [n for n in no_grad if not n.startswith("transformer.encoder")], no_grad
    assert model.controller.layers[0].weight.grad.abs().sum() > 0
    assert model.mask_head.lay1.weight.grad.abs().sum() > 0
    assert model.backbone.res3[0].conv1.weight.grad.abs().sum() > 0


def test_train_targets_absent_frames_and_mask_subsampling():
    model = _model()
    clip = make_clip(num_frames=3, height=64, width=96, absent={(1, 1)})
    targets = model.prepare_targets([clip], (64, 96))
    t = targets[0]
    assert t["labels"].tolist() == [0, 2]
    # absent frame: tiny box, empty mask
    assert torch.all(t["boxes"][1, 1] == 1e-6)
    assert t["masks"][1, 1].sum() == 0
    # mask targets are the GT subsampled at [2::4, 2::4]
    gt = clip["instances"][0].gt_masks.tensor[0].float()
    assert torch.equal(t["masks"][0, 0], gt[2::4, 2::4])
    # present box: normalised cxcywh
    x0, y0, x1, y1 = clip["instances"][0].gt_boxes.tensor[0].tolist()
    torch.testing.assert_close(
        t["boxes"][0, 0],
        torch.tensor([(x0 + x1) / 192, (y0 + y1) / 128, (x1 - x0) / 96, (y1 - y0) / 64]),
    )


def test_train_with_no_objects_gives_finite_losses():
    model = _model()
    model.train()
    losses = model([make_clip(tracks=())])
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["loss_bbox"]) == 0.0 and float(losses["loss_ce"]) > 0
    sum(losses.values()).backward()


# ---------------------------------------------------------------- inference
def _check_output(out, num_frames, hw):
    check_video_output(out, num_frames=num_frames, image_size=hw, rle=False)
    assert all(m.any() for m in out["pred_masks"])  # empty tracks are dropped


def test_eval_outputs_follow_contract_and_top_k_order():
    model = _model()
    model.eval()
    out = model([_test_input(make_clip(num_frames=4, height=70, width=100))])[0]
    _check_output(out, 4, (70, 100))
    assert 0 < len(out["pred_scores"]) <= 5
    assert torch.all(out["pred_scores"][:-1] >= out["pred_scores"][1:])
    assert out["pred_labels"].max() < 3


def test_eval_one_frame_video_and_resized_input():
    model = _model()
    model.eval()
    video = _test_input(make_clip(num_frames=1, height=64, width=96))
    video["height"], video["width"] = 128, 192  # the mapper resized a 128x192 video to 64x96
    out = model([video])[0]
    _check_output(out, 1, (128, 192))


def test_eval_chunking_does_not_change_the_result():
    model = _model()
    model.eval()
    video = _test_input(make_clip(num_frames=5))
    ref = model([video])[0]
    model.test_chunk_size = 2
    chunked = model([video])[0]
    torch.testing.assert_close(chunked["pred_scores"], ref["pred_scores"], rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(chunked["pred_masks"], ref["pred_masks"]))


def test_eval_long_video_windows_and_rle():
    model = _model(
        **{
            "MODEL.VIS.TEST_WINDOW_SIZE": 3,
            "MODEL.VIS.TEST_WINDOW_STRIDE": 2,
            "MODEL.VIS.TEST_CHUNK_SIZE": 2,
            "MODEL.VIS.OUTPUT_RLE": True,
        }
    )
    model.eval()
    out = model([_test_input(make_clip(num_frames=7))])[0]
    assert len(out["pred_scores"]) > 0
    for m in out["pred_masks"]:
        assert not isinstance(m, torch.Tensor) and len(m) == 7  # an on-disk sequence of RLE dicts
        assert all(r is None or isinstance(r["counts"], str) for r in m)


def test_eval_matches_whole_video_reference_masks():
    """Masks of the output equal the mask head run on all queries, then upsampled and
    thresholded."""
    model = _model()
    model.eval()
    video = _test_input(make_clip(num_frames=3))
    out = model([video])[0]
    with torch.no_grad():
        images = torch.stack(
            [(f.float() - model.pixel_mean) / model.pixel_std for f in video["image"]]
        )
        mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
        memory, _, shapes, ratios, feats = model._encode_frames(images, mask, 3)
        hs, _, _, refs = model.transformer.decode(
            memory[None], None, shapes, ratios, model.query_embed.weight
        )
        logits = model.class_embed[-1](hs[-1, 0])
        all_masks = model._masks(feats, refs[-1][0], model.controller(hs[-1, 0]), (64, 96))
    scores, idx = logits.sigmoid().flatten().topk(5)
    q = idx // 3
    up = (
        F.interpolate(all_masks[q], size=(64, 96), mode="bilinear", align_corners=False).sigmoid()
        > 0.5
    )
    keep = [i for i in range(5) if up[i].any()]
    torch.testing.assert_close(out["pred_scores"], scores[keep])
    for m, i in zip(out["pred_masks"], keep):
        assert torch.equal(m, up[i])


# ---------------------------------------------------------------- matcher
def _random_outputs(b=2, q=6, t=3, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "pred_logits": torch.randn(b, q, k, generator=g),
        "pred_boxes": torch.rand(b, t, q, 4, generator=g) * 0.5 + 0.25,
    }


def _random_targets(g_counts, t=3, k=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in g_counts:
        boxes = torch.rand(n, t, 4, generator=g) * 0.5 + 0.25
        if n:
            boxes[0, 1] = 1e-6  # absent frame
        out.append({"labels": torch.randint(0, k, (n,), generator=g), "boxes": boxes})
    return out


def test_matcher_batched_equals_one_by_one_and_empty_targets():
    matcher = VideoBoxHungarianMatcher()
    outputs, targets = _random_outputs(b=3), _random_targets([2, 0, 3])
    batched = matcher(outputs, targets)
    for b in range(3):
        single = matcher({k: v[b : b + 1] for k, v in outputs.items()}, targets[b : b + 1])[0]
        assert torch.equal(batched[b][0], single[0]) and torch.equal(batched[b][1], single[1])
    assert len(batched[1][0]) == 0 and len(batched[1][1]) == 0
    assert len(batched[2][0]) == 3 and sorted(batched[2][1].tolist()) == [0, 1, 2]


def test_matcher_finds_the_exact_prediction_and_uses_all_frames():
    matcher = VideoBoxHungarianMatcher(cost_class=0.0)
    outputs = _random_outputs(b=1, q=5)
    gt = outputs["pred_boxes"][0, :, 3].clone()  # query 3's boxes over all frames
    targets = [{"labels": torch.tensor([1]), "boxes": gt[None]}]
    assert matcher(outputs, targets)[0][0].tolist() == [3]
    # same boxes in frame 0 only: another query that agrees on frames 1..T-1 wins
    outputs["pred_boxes"][0, 1:, 1] = gt[1:]
    outputs["pred_boxes"][0, 1:, 3] = torch.tensor([0.9, 0.9, 0.05, 0.05])
    assert matcher(outputs, targets)[0][0].tolist() == [1]


def test_matcher_cost_terms():
    matcher = VideoBoxHungarianMatcher(
        cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, bbox_cost_p=1.0
    )
    logits = torch.tensor([[0.0, 2.0]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    gt = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]]])
    c = matcher.cost_matrix(logits, boxes, torch.tensor([1]), gt)
    p = torch.sigmoid(torch.tensor(2.0))
    cls = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8) - 0.75 * p**2 * -torch.log(1 - p + 1e-8)
    # frame 1: boxes shifted by 0.1 of width 0.2 -> IoU = 1/3, enclosing = union -> GIoU = 1/3
    expected = 2 * cls + 5 * 0.1 + 2 * -(1.0 + 1 / 3) / 2
    torch.testing.assert_close(c[0, 0], expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- mask head
def test_dynamic_mask_head_matches_grouped_conv_reference():
    """Our einsum form equals CondInst's grouped 1x1 convs on [dx, dy, feats] (official layout)."""
    torch.manual_seed(0)
    t, c8, h, w, q = 2, 8, 5, 7, 3
    feats = torch.randn(t, c8, h, w)
    ref_xy = torch.rand(q, t, 2) * 40
    weight_nums, bias_nums = [80, 64, 8], [8, 8, 1]
    params = torch.randn(q, 169) * 0.3
    out = dynamic_mask_logits(
        feats, ref_xy, params, channels=8, weight_nums=weight_nums, bias_nums=bias_nums
    )
    assert out.shape == (q, t, 2 * h, 2 * w)
    ys, xs = torch.meshgrid(torch.arange(h) * 8 + 4, torch.arange(w) * 8 + 4, indexing="ij")
    splits = torch.split(params, weight_nums + bias_nums, 1)
    for f in range(t):
        rel = torch.stack(
            [ref_xy[:, f, 0, None, None] - xs, ref_xy[:, f, 1, None, None] - ys], 1
        )  # [q,2,h,w]
        x = torch.cat([rel, feats[f].expand(q, -1, -1, -1)], 1).reshape(1, q * 10, h, w)
        x = F.relu(F.conv2d(x, splits[0].reshape(q * 8, 10, 1, 1), splits[3].reshape(-1), groups=q))
        x = F.relu(F.conv2d(x, splits[1].reshape(q * 8, 8, 1, 1), splits[4].reshape(-1), groups=q))
        x = F.conv2d(x, splits[2].reshape(q, 8, 1, 1), splits[5].reshape(-1), groups=q)
        torch.testing.assert_close(
            out[:, f], aligned_bilinear(x.reshape(q, 1, h, w), 2)[:, 0], rtol=1e-4, atol=1e-4
        )


def test_aligned_bilinear_keeps_pixel_alignment():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    up = aligned_bilinear(x, 2)
    assert up.shape == (1, 1, 6, 8)
    # output (2i+1, 2j+1) is the input (i, j) (CondInst alignment); first row/col replicate
    torch.testing.assert_close(up[0, 0, 1::2, 1::2], x[0, 0])
    torch.testing.assert_close(up[0, 0, 0], up[0, 0, 1])


def test_inverse_sigmoid_clamps():
    x = torch.tensor([0.0, 0.5, 1.0])
    y = inverse_sigmoid(x)
    torch.testing.assert_close(
        y, torch.tensor([torch.log(torch.tensor(1e-5)), 0.0, -torch.log(torch.tensor(1e-5))])
    )


# ---------------------------------------------------------------- parameter count and
# converter
@pytest.fixture(scope="module")
def r50_model():
    cfg = tiny_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    from vis_zoo_projects.seqformer.config import add_seqformer_config

    add_seqformer_config(cfg)  # official defaults for every SeqFormer key
    cfg.MODEL.SEQFORMER.NUM_CLASSES = 42  # the official head
    torch.manual_seed(0)
    return build_model(cfg)


def test_r50_parameter_count_equals_official(r50_model):
    params = list(r50_model.parameters())
    assert sum(p.numel() for p in params) == 48_404_173
    assert sum(p.numel() for p in params if p.requires_grad) == 48_181_773
    assert sum(p.numel() for p in r50_model.backbone.parameters()) == 23_454_912
    assert sum(p.numel() for p in r50_model.transformer.parameters()) == 16_994_336


def _official_name(ours: str) -> str:
    """Our key -> the official one (written independently of convert.map_official_key)."""
    m = re.match(r"^backbone\.stem\.conv1\.(norm\.)?(.+)$", ours)
    if m:
        return "detr.backbone.0.body." + ("bn1." if m.group(1) else "conv1.") + m.group(2)
    m = re.match(r"^backbone\.res(\d)\.(\d+)\.(conv\d|shortcut)\.(norm\.)?(.+)$", ours)
    if m:
        stage, block, conv, norm, leaf = m.groups()
        base = f"detr.backbone.0.body.layer{int(stage) - 1}.{block}."
        if conv == "shortcut":
            return base + ("downsample.1." if norm else "downsample.0.") + leaf
        return base + (f"bn{conv[-1]}." if norm else f"{conv}.") + leaf
    if ours.startswith(("controller.", "mask_head.")):
        return ours
    return "detr." + ours


def _fabricated_official(model):
    g = torch.Generator().manual_seed(0)
    official = {}
    for k, v in model.state_dict().items():
        shape = (42, *v.shape[1:]) if k.startswith("class_embed.") else v.shape
        official[_official_name(k)] = torch.randn(shape, generator=g)
    for k in list(official):
        if k.startswith("detr.transformer.decoder.bbox_embed."):
            official["detr.bbox_embed." + k[len("detr.transformer.decoder.bbox_embed.") :]] = (
                official[k]
            )
    return official


def test_converter_on_fabricated_official_checkpoint(r50_model):
    official = _fabricated_official(r50_model)
    assert len(official) == 733  # the official R-50 checkpoint's tensor count (wjf5203/SeqFormer)
    assert "detr.transformer.encoder.layers.0.self_attn.output_proj_box.weight" in official
    assert "detr.backbone.0.body.layer1.0.downsample.1.running_var" in official
    ours = convert_official_state_dict({"model": official}, r50_model.state_dict())
    missing, unexpected = r50_model.load_state_dict(ours, strict=True)
    assert not missing and not unexpected
    torch.testing.assert_close(
        r50_model.backbone.res2[0].shortcut.norm.running_var,
        official["detr.backbone.0.body.layer1.0.downsample.1.running_var"],
    )
    torch.testing.assert_close(
        r50_model.transformer.decoder.layers[3].time_attention_weights.weight,
        official["detr.transformer.decoder.layers.3.time_attention_weights.weight"],
    )


def test_converter_class_rows_and_errors(r50_model):
    official = _fabricated_official(r50_model)
    reference = {
        k: (v[:40] if k.startswith("class_embed.") else v)
        for k, v in r50_model.state_dict().items()
    }
    ours = convert_official_state_dict(official, reference)
    # 40 contiguous classes take YouTube-VIS ids 1..40
    torch.testing.assert_close(
        ours["class_embed.2.weight"], official["detr.class_embed.2.weight"][1:41]
    )
    bad = dict(official)
    bad["detr.query_embed.weight"] = torch.zeros(100, 512)
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_official_state_dict(bad, reference)
    bad = dict(official)
    bad["detr.bbox_embed.0.layers.0.weight"] = torch.zeros(256, 256)
    with pytest.raises(ValueError, match="do not equal"):
        convert_official_state_dict(bad, reference)
    bad = dict(official)
    del bad["mask_head.lay1.weight"]
    bad["detr.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match="not used.*detr.extra.weight(.|\\n)*missing.*mask_head.lay1.weight"
    ):
        convert_official_state_dict(bad, reference)
