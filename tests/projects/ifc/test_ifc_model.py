import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import META_ARCH_REGISTRY
from pycocotools import mask as mask_util

from vis_zoo.modeling import check_video_output, clip_targets_from_batch, downsample_clip_masks

from tests.projects.ifc.ifc_helpers import TINY_CLASSES, detecting, make_video, tiny_model


def test_registered():
    import vis_zoo_projects.ifc  # noqa: F401

    assert META_ARCH_REGISTRY.get("IFC").__name__ == "IFC"


def test_forward_backward(model):
    model.train()
    losses = model([make_video(seed=0), make_video(seed=1, height=60, width=90)])
    expected = {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert (
        grads["transformer.memory_bus"] is not None
        and grads["transformer.memory_bus"].abs().sum() > 0
    )
    assert grads["mask_head.adapter2.weight"].abs().sum() > 0
    assert grads["backbone.res3.0.conv1.weight"].abs().sum() > 0
    assert not model.backbone.stem.conv1.weight.requires_grad  # FREEZE_AT = 2
    assert "criterion.empty_weight" in model.state_dict()


def test_loss_weights_applied(model):
    model.train()
    torch.manual_seed(0)
    weighted = model([make_video()])
    model.weight_dict = {k: 1.0 for k in model.weight_dict}
    torch.manual_seed(0)
    raw = model([make_video()])
    assert torch.allclose(weighted["loss_mask"], 3 * raw["loss_mask"])
    assert torch.allclose(weighted["loss_dice_0"], 3 * raw["loss_dice_0"])
    assert torch.allclose(weighted["loss_ce"], raw["loss_ce"])


def test_targets_keep_tracks_present_in_some_frame():
    video = make_video(absent=((1, 0), (1, 1), (1, 2)))  # track 1 never present
    targets = clip_targets_from_batch([video, make_video(seed=2)], torch.device("cpu"))
    assert targets[0]["labels"].tolist() == [0] and targets[0]["masks"].shape == (1, 3, 64, 96)
    assert targets[1]["labels"].tolist() == [0, 2]
    assert targets[1]["valid"].tolist() == [[True, True, True], [True, False, True]]
    assert not targets[1]["masks"][1, 1].any()
    soft = downsample_clip_masks(targets[1]["masks"], 4)
    assert soft.shape == (2, 3, 16, 24) and soft.dtype == torch.float32
    assert ((soft > 0) & (soft < 1)).any()  # bilinear: soft targets on the borders


def test_bad_training_input_is_named(model):
    model.train()
    video = make_video()
    video["instances"][1] = video["instances"][1][:1]
    with pytest.raises(ValueError, match="video 0: frame 1"):
        model([video])


def _check_contract(out, length, height, width):
    check_video_output(out, num_frames=length, image_size=(height, width), num_classes=TINY_CLASSES)
    assert (out["pred_scores"] > 0.01).all()  # MODEL.IFC.APPLY_CLS_THRES
    for m in out["pred_masks"]:
        if not isinstance(m, torch.Tensor):
            for rle in m:
                assert rle is None or mask_util.decode(rle).shape == (height, width)


def test_eval_output_contract_at_original_size(model):
    detecting(model).eval()
    out = model([make_video(num_frames=3, with_instances=False, out_size=(100, 150))])
    assert len(out) == 1
    _check_contract(out[0], 3, 100, 150)
    assert len(out[0]["pred_scores"]) > 0


def test_eval_matches_direct_clip_forward(model):
    """A video within one window: masks = bilinear upsampling of the clip's logits, scores =
    softmax."""
    detecting(model).eval()
    video = make_video(num_frames=3, with_instances=False, out_size=(80, 120))
    out = model([video])[0]
    with torch.no_grad():
        feats = model.frame_features(video["image"])
        cls, masks = model.clip_forward(feats, 1, return_intermediate=False)
    probs = cls[-1, 0].softmax(-1)
    keep = probs.argmax(-1) < TINY_CLASSES
    probs, logits = probs[keep], masks[-1, 0][keep]
    track, label = torch.where(probs[:, :-1] > 0.01)
    assert torch.allclose(out["pred_scores"], probs[track, label])
    assert out["pred_labels"].tolist() == label.tolist()
    up = F.interpolate(logits, size=(80, 120), mode="bilinear", align_corners=False) > 0
    for i, t in enumerate(track.tolist()):
        assert torch.equal(out["pred_masks"][i], up[t])


def test_chunk_size_does_not_change_results():
    video = make_video(num_frames=5, with_instances=False)
    a = detecting(tiny_model(TEST_CHUNK_SIZE=1)).eval()([video])[0]
    b = detecting(tiny_model(TEST_CHUNK_SIZE=36)).eval()([video])[0]
    assert len(a["pred_scores"]) > 0
    assert torch.allclose(a["pred_scores"], b["pred_scores"], atol=1e-5)
    assert all(torch.equal(x, y) for x, y in zip(a["pred_masks"], b["pred_masks"]))


def test_long_video_windows_rle_and_one_frame(model):
    detecting(model).eval()
    model.window_size, model.window_stride, model.chunk_size, model.output_rle = 3, 2, 2, True
    out = model([make_video(num_frames=8, with_instances=False)])[0]
    _check_contract(out, 8, 64, 96)
    assert len(out["pred_masks"]) > 0
    # every frame is covered by some window: each track has a mask entry on every frame it was given
    assert any(all(r is not None for r in m) for m in out["pred_masks"])
    one = model([make_video(num_frames=1, with_instances=False)])[0]
    _check_contract(one, 1, 64, 96)


def test_video_with_no_detections(model):
    model.eval()
    with torch.no_grad():  # every query's best class is no-object
        model.class_embed.layers[-1].bias[-1] = 1e4
    out = model([make_video(num_frames=4, with_instances=False)])[0]
    assert len(out["pred_scores"]) == 0 and out["pred_masks"] == []
    assert out["image_size"] == (64, 96)


def test_frame_permutation_equivariance(model):
    """Nothing encodes time in IFC: permuting the frames of a clip permutes its masks."""
    detecting(model).eval()
    video = make_video(num_frames=3, with_instances=False)
    perm = [2, 0, 1]
    permuted = dict(video, image=[video["image"][i] for i in perm])
    a, b = model([video])[0], model([permuted])[0]
    assert len(a["pred_scores"]) > 0
    assert torch.allclose(a["pred_scores"], b["pred_scores"], atol=1e-5)
    for ma, mb in zip(a["pred_masks"], b["pred_masks"]):
        assert torch.equal(ma[perm], mb)


def test_memory_bus_is_the_only_inter_frame_path(model):
    """Frame tokens of frame 0 change when frame 1 changes, but not with the bus layers zeroed."""
    model.eval()
    enc = model.transformer.encoder
    video = make_video(num_frames=2, with_instances=False)
    other = dict(video, image=[video["image"][0], torch.zeros_like(video["image"][1])])

    def frame0_memory(v):
        with torch.no_grad():
            feats = model.frame_features(v["image"])
            _, memory = model.transformer(
                feats["src"], feats["mask"], model.query_embed.weight, feats["pos"], 1, False
            )
        return memory[0]

    assert not torch.allclose(frame0_memory(video), frame0_memory(other))
    for layer in enc.bus_layers:  # bus layer output independent of the other frames' bus tokens
        layer.self_attn.out_proj.weight.data.zero_()
        layer.self_attn.out_proj.bias.data.zero_()
    assert torch.allclose(frame0_memory(video), frame0_memory(other), atol=1e-5)


def test_pre_norm_without_deep_supervision_trains():
    from detectron2.modeling import build_model

    from tests.projects.ifc.ifc_helpers import tiny_cfg

    cfg = tiny_cfg()
    cfg.MODEL.IFC.PRE_NORM = True
    cfg.MODEL.IFC.DEEP_SUPERVISION = False
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.transformer.encoder.out_norm is not None
    losses = model([make_video(num_frames=2)])
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}
    sum(losses.values()).backward()


def test_missing_backbone_levels_are_named():
    from detectron2.modeling import build_model

    from tests.projects.ifc.ifc_helpers import tiny_cfg

    cfg = tiny_cfg()
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    with pytest.raises(ValueError, match=r"missing \['res3'\]"):
        build_model(cfg)
