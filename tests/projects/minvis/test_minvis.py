"""MinVIS: parameter count (the Mask2Former detector, shared with VITA), frame-level training,
query-embedding tracking, chunked inference, the output contract and the checkpoint converter."""

import pytest
import torch
from detectron2.modeling import build_model

from vis_zoo.engine.setup import build_config
from vis_zoo.modeling.backbone import normalize_and_pad
from vis_zoo.modeling.query_matching import match_queries_to_previous_frame
from vis_zoo_projects.minvis import convert_official_state_dict

from tests.projects.mask2former_clips import (
    build_tiny_model,
    check_chunked_inference_matches_one_pass,
    check_output,
    make_clip,
    make_test_video,
)


def tiny_model(extra=()):
    return build_tiny_model("configs/minvis/synthetic_R18.yaml", extra=extra)


def test_official_parameter_count_is_the_vita_detector():
    """MinVIS R-50 is Mask2Former R-50 (40 classes): VITA R-50 without its VITA module, same
    names."""
    minvis = build_model(build_config("configs/minvis/ytvis19_R50.yaml", ["MODEL.DEVICE", "cpu"]))
    vita = build_model(build_config("configs/vita/ytvis19_R50.yaml", ["MODEL.DEVICE", "cpu"]))
    assert sum(p.numel() for p in minvis.parameters()) == 43_959_977 == 57_135_058 - 13_175_081
    vita_detector = {
        k: v.shape
        for k, v in vita.state_dict().items()
        if not k.startswith(("vita_module.", "vita_criterion."))
    }
    assert {k: v.shape for k, v in minvis.state_dict().items()} == vita_detector


def test_training_forward_backward_frames_of_any_count():
    model = tiny_model().train()
    # videos of 2 and 1 frames in one batch: every frame is an image of its own
    losses = model(
        [make_clip(seed=1, absent=(1, 1)), make_clip(num_frames=1, seed=2, num_objects=1)]
    )
    assert set(losses) == {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
    assert all(torch.isfinite(v) and v.dim() == 0 and v >= 0 for v in losses.values())
    sum(losses.values()).backward()
    for name in (
        "backbone.stem.conv1.weight",
        "sem_seg_head.predictor.query_feat.weight",
        "sem_seg_head.pixel_decoder.mask_features.weight",
        "sem_seg_head.predictor.class_embed.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_training_frame_targets_hold_only_present_tracks():
    model = tiny_model().train()
    seen = []
    original = model.criterion.forward
    model.criterion.forward = lambda outputs, targets: (
        seen.extend(targets),
        original(outputs, targets),
    )[1]
    model([make_clip(num_frames=2, seed=3, absent=(0, 1))])
    assert [len(t["labels"]) for t in seen] == [2, 1]
    assert seen[1]["labels"].tolist() == [1] and seen[1]["masks"].shape == (1, 64, 96)


def test_match_queries_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    previous = torch.randn(7, 16, generator=g)
    perm = torch.randperm(7, generator=g)
    current = torch.empty_like(previous)
    current[perm] = previous * 3.0 + 0.01 * torch.randn(7, 16, generator=g)  # scale does not matter
    assert torch.equal(match_queries_to_previous_frame(previous, current), perm)
    assert torch.equal(
        current[match_queries_to_previous_frame(previous, current)].argmax(-1),
        (previous * 3.0).argmax(-1),
    )
    with pytest.raises(ValueError, match="shape"):
        match_queries_to_previous_frame(previous, current[:5])
    # non-finite rows (a diverged model) are an error that says so, not a silent matching
    broken = current.clone()
    broken[perm[0]] = float("nan")
    broken[perm[1]] = float("inf")
    with pytest.raises(FloatingPointError, match="2 of 7 of this frame.*diverged"):
        match_queries_to_previous_frame(previous, broken)


def test_tracking_follows_shuffled_queries():
    """If the detector returns the same queries in a different order in each frame, every slot keeps
    one object: per-slot logits stay constant and its mask embedding is the same in every frame."""
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(1)
    base_queries = torch.randn(8, 32, generator=g)
    base_logits = torch.randn(8, 5, generator=g)
    orders = [torch.randperm(8, generator=g) for _ in range(4)]
    original = model.sem_seg_head.forward_queries

    def shuffled(features, num_frame_query_layers=1):
        out = original(features, num_frame_query_layers)
        t = out["pred_logits"].shape[0]
        frame = shuffled.next_frame
        shuffled.next_frame += t
        out["frame_queries"] = torch.stack([base_queries[orders[frame + i]] for i in range(t)])[
            None
        ]
        out["pred_logits"] = torch.stack([base_logits[orders[frame + i]] for i in range(t)])
        return out

    shuffled.next_frame = 0
    model.sem_seg_head.forward_queries = shuffled
    received = []
    with torch.no_grad():
        mean_logits, detected = model.track_queries(
            make_test_video(4)["image"],
            on_frames=lambda chunk, embeds: received.append((chunk, embeds)),
        )
    first = orders[0]
    torch.testing.assert_close(mean_logits, base_logits[first])
    mask_embeds = torch.cat([embeds for _, embeds in received])
    assert [chunk.start for chunk, _ in received] == list(range(0, 4, received[0][1].shape[0]))
    for t in range(4):
        torch.testing.assert_close(
            mask_embeds[t], model.sem_seg_head.predictor.mask_embed(base_queries[first])
        )
    assert detected.mask_features is None  # MinVIS keeps no mask features


def test_one_frame_masks_equal_the_image_model():
    """With T = 1 the output is Mask2Former's own top-k prediction: same classes, masks from its /4
    logits."""
    model = tiny_model().eval()
    video = make_test_video(1, seed=2, out_hw=(64, 96))
    with torch.no_grad():
        out = model([video])[0]
        images = normalize_and_pad(video["image"], model.pixel_mean, model.pixel_std, 32)
        full = model.sem_seg_head(model.backbone(images.tensor))
    scores = full["pred_logits"][0].softmax(-1)[:, :-1]
    top_scores, top_idx = scores.flatten().topk(5)
    torch.testing.assert_close(out["pred_scores"], top_scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(out["pred_labels"], top_idx % 4)
    logits = full["pred_masks"][0][top_idx // 4]
    expected = (
        torch.nn.functional.interpolate(
            logits[None], size=(64, 96), mode="bilinear", align_corners=False
        )[0]
        > 0
    )
    for mask, ref in zip(out["pred_masks"], expected):
        assert (mask[0] != ref).float().mean() < 1e-3


def test_inference_contract_and_chunking():
    model = tiny_model().eval()
    with torch.no_grad():
        check_output(model([make_test_video(1)])[0], 1, 80, 120, 5)
    check_chunked_inference_matches_one_pass(
        model, make_test_video(7, seed=1), 2 * 64 * 96
    )  # 2-frame passes


def test_rle_output_and_bad_input():
    model = tiny_model(["MODEL.VIS.OUTPUT_RLE", "True"]).eval()
    with torch.no_grad():
        out = model([make_test_video(2, seed=4)])[0]
    assert len(out["pred_masks"]) == 5
    assert all(len(track) == 2 and track[0]["size"] == [80, 120] for track in out["pred_masks"])
    with pytest.raises(ValueError, match="video 9"):
        model([{"video_id": 9, "image": [], "height": 8, "width": 8}])
    with pytest.raises(ValueError, match="TEST_FEATURE_STORE"):
        tiny_model(["MODEL.VIS.TEST_FEATURE_STORE", "ram"])


def test_converter_on_a_fabricated_official_state_dict():
    model = tiny_model().eval()
    reference = model.state_dict()
    g = torch.Generator().manual_seed(0)
    official = {
        k.replace("predictor.query_feat", "predictor.static_query"): (
            torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
        )
        for k, v in reference.items()
    }
    converted = convert_official_state_dict({"model": official}, reference)
    model.load_state_dict(converted)
    torch.testing.assert_close(
        model.sem_seg_head.predictor.query_feat.weight,
        official["sem_seg_head.predictor.static_query.weight"],
    )
    with pytest.raises(ValueError, match="not used: vita_module.extra"):
        convert_official_state_dict({**official, "vita_module.extra": torch.zeros(1)}, reference)
    missing = dict(official)
    missing.pop("sem_seg_head.pixel_decoder.mask_features.weight")
    with pytest.raises(ValueError, match="mask_features.weight"):
        convert_official_state_dict(missing, reference)
    # a COCO (81-way) initialisation: the class head is skipped on request, an error otherwise
    coco = dict(official)
    coco["sem_seg_head.predictor.class_embed.weight"] = torch.zeros(81, 32)
    coco["sem_seg_head.predictor.class_embed.bias"] = torch.zeros(81)
    coco["criterion.empty_weight"] = torch.ones(81)
    with pytest.raises(ValueError, match="class_embed"):
        convert_official_state_dict(coco, reference)
    kept = convert_official_state_dict(coco, reference, skip_class_heads=True)
    assert (
        "sem_seg_head.predictor.class_embed.weight" not in kept and len(kept) == len(reference) - 3
    )
