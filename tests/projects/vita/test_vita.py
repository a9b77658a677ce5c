"""VITA: parameter counts, training forward/backward, targets, frozen detector, the VITA module's
windowed encoder, token pruning, chunked long-video inference and the output contract."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks

from vis_zoo.engine.setup import build_config
from vis_zoo_projects.vita.transformer import (
    VITAModule,
    shifted_window_blocked,
    window_attention_mask,
)

from tests.projects.mask2former_clips import (
    TINY_DETECTOR,
    TINY_VITA_MODULE,
    check_chunked_inference_matches_one_pass,
    check_output,
    make_clip,
    make_test_video,
)

TINY = TINY_DETECTOR + [
    "MODEL.MASK_FORMER.DEC_LAYERS",
    "4",
    *TINY_VITA_MODULE,
    "MODEL.VITA.NUM_OBJECT_QUERIES",
    "6",
    "MODEL.VITA.LAST_LAYER_NUM",
    "2",
    "MODEL.VITA.ENC_WINDOW_SIZE",
    "2",
]


def tiny_model(extra=()):
    cfg = build_config("configs/vita/synthetic_R18.yaml", TINY + list(extra))
    torch.manual_seed(0)
    return build_model(cfg)


def test_official_parameter_counts():
    for name, expected in (("ytvis19_R50", 57_135_058), ("ytvis19_R101", 76_074_962)):
        cfg = build_config(f"configs/vita/{name}.yaml", ["MODEL.DEVICE", "cpu"])
        model = build_model(cfg)
        assert sum(p.numel() for p in model.parameters()) == expected, name
        assert all(p.requires_grad for p in model.parameters())
        if name == "ytvis19_R50":
            assert len(model.state_dict()) == 706  # tensors of the official checkpoint
            assert sum(p.numel() for p in model.vita_module.parameters()) == 13_175_081


def test_training_forward_backward():
    model = tiny_model()
    model.train()
    losses = model([make_clip(seed=1, absent=(1, 1)), make_clip(seed=2, num_objects=1)])
    expected = {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1", "_2")}
    expected |= {f"loss_vita_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0")} | {
        "loss_vita_sim"
    }
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    # weights applied: CE weight 2, similarity 0.5 (ratio to an unweighted recomputation is not
    # observable, but every weighted term is non-negative)
    assert all(v >= 0 for v in losses.values())
    sum(losses.values()).backward()
    for name in (
        "backbone.stem.conv1.weight",
        "sem_seg_head.predictor.query_feat.weight",
        "vita_module.query_feat.weight",
        "vita_module.fq_pos.weight",
        "vita_module.sim_embed_frame.weight",
        "vita_module.sim_embed_clip.weight",
        "vita_module.vita_mask_features.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_training_clip_without_objects():
    model = tiny_model()
    model.train()
    clip = make_clip(seed=3, num_objects=1, absent=(0, 0))
    for inst in clip["instances"]:  # the object is absent in every frame
        inst.gt_masks = BitMasks(torch.zeros_like(inst.gt_masks.tensor))
    losses = model([clip])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_prepare_targets_absent_frames():
    model = tiny_model()
    clip = make_clip(num_frames=3, num_objects=3, seed=4, absent=(1, 2))
    # track 2 is absent everywhere: dropped from the clip targets
    for inst in clip["instances"]:
        m = inst.gt_masks.tensor.clone()
        m[2] = False
        inst.gt_masks = BitMasks(m)
    frame_t, clip_t = model.prepare_targets([clip], (64, 96), 3)
    assert len(frame_t) == 3 and len(clip_t) == 1
    c = clip_t[0]
    assert c["labels"].tolist() == [0, 1]
    assert c["ids"].tolist() == [[0, 0, 0], [1, 1, -1]]  # shifted so the smallest id is 0
    assert c["masks"].shape == (2, 3, 64, 96) and c["masks"][1, 2].sum() == 0
    assert [len(f["labels"]) for f in frame_t] == [2, 2, 1]
    assert frame_t[2]["ids"].tolist() == [0]


def test_frozen_detector_trains_only_vita():
    model = tiny_model(["MODEL.VITA.FREEZE_DETECTOR", "True"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("vita_module.") for n in trainable)
    assert trainable == {n for n, _ in model.vita_module.named_parameters(prefix="vita_module")}
    model.train()
    losses = model([make_clip(seed=5)])
    sum(v for v in losses.values() if v.requires_grad).backward()
    for name, p in model.named_parameters():
        if name.startswith("vita_module."):
            continue
        assert p.grad is None, name
    assert model.vita_module.query_feat.weight.grad.abs().sum() > 0


def _module(window=2, enc_layers=2, **kw):
    torch.manual_seed(0)
    args = dict(
        in_channels=16,
        hidden_dim=16,
        num_classes=3,
        num_frame_queries=4,
        num_queries=5,
        nheads=2,
        dim_feedforward=32,
        enc_layers=enc_layers,
        dec_layers=2,
        enc_window_size=window,
        mask_dim=16,
    )
    args.update(kw)
    return VITAModule(**args)


def test_single_window_equals_full_attention():
    """With one unpadded window, windowed attention is plain self-attention over all tokens."""
    fq = torch.randn(2, 2 * 4, 4, 16)  # L=2, B*T = 2 videos x 4 frames
    windowed = _module(window=4).train()
    full = _module(window=0).train()
    full.load_state_dict(windowed.state_dict())
    a, b = windowed(fq, num_frames=4), full(fq, num_frames=4)
    torch.testing.assert_close(a["pred_logits"], b["pred_logits"])
    torch.testing.assert_close(a["pred_fq_embed"], b["pred_fq_embed"])


def test_padded_window_ignores_padding_and_windows_are_independent():
    m = _module(window=3, enc_layers=1).eval()
    fq = torch.randn(1, 5, 4, 16)  # T = 5 -> windows [0,1,2], [3,4,pad]
    x = m.input_proj_dec(fq.reshape(1, 5, 4, 16).permute(1, 2, 0, 3))
    enc = m.encode_frame_query(x)
    # the second window alone (2 frames, one padded) gives the same tokens as in the whole video
    enc_tail = m.encode_frame_query(x[3:])
    torch.testing.assert_close(enc[3:], enc_tail)
    # frames of the first window do not depend on frames of the second
    x2 = x.clone()
    x2[4] += 1.0
    torch.testing.assert_close(m.encode_frame_query(x2)[:3], enc[:3])


def test_shifted_window_mask_definition():
    pad = torch.tensor([[False] * 5 + [True]])  # T = 5, W = 3 -> 2 windows, 1 padded frame
    mask = window_attention_mask(shifted_window_blocked(pad, 3), num_queries=1, num_heads=1)
    assert mask.shape == (2, 3, 3)
    # roll by ceil(3/2) = 2: [4, pad, 0 | 1, 2, 3]; window 0 splits into {4, pad} and {0}, and the
    # padded frame is blocked both ways
    blocked0 = mask[0] < 0
    assert blocked0.tolist() == [[False, True, True], [True, True, True], [True, True, False]]
    assert not (mask[1] < 0).any()
    # test-time encoder with shifted windows: window batching does not change the result
    m = _module(window=3, enc_layers=2).eval()
    fq = torch.randn(1, 7, 4, 16)
    ref = m(fq, num_frames=7)
    m.test_window_batch = 1
    torch.testing.assert_close(m(fq, num_frames=7)["pred_logits"], ref["pred_logits"])


@pytest.mark.parametrize("window, enc_layers", [(2, 4), (3, 6), (3, 5), (6, 6)])
def test_streamed_encoder_context_is_enough_and_one_window_less_is_not(window, enc_layers):
    """Blocks with `stream_context_frames()` of context give the one-pass tokens (odd windows, an
    odd number of layers and the R-50 configs' 6 layers of 6-frame windows included); one window
    of context less changes them, so the context is no larger than it must be."""
    from vis_zoo.modeling.mask2former.video_inference import MemoryFeatureStore

    # the initial weights: attention spread over the window, so that a missing frame shows
    m = _module(window=window, enc_layers=enc_layers).eval()
    g = torch.Generator().manual_seed(1)
    num_frames = 61
    fq = torch.randn(num_frames, 4, 16, generator=g)
    context = m.stream_context_frames()
    assert context == (enc_layers // 2) * window
    block_frames = 2 * context + 2 * window  # blocks of two windows: many block edges

    def streamed_tokens():
        store = MemoryFeatureStore(num_frames, torch.device("cpu"))
        m.infer_streamed(lambda s, e: fq[s:e], num_frames, store, block_frames=block_frames)
        return store.read(0, num_frames)

    with torch.no_grad():
        one_pass = m.encode_frame_query(m.input_proj_dec(fq[:, :, None]))[:, :, 0]
        exact_error = (streamed_tokens() - one_pass).abs().max()
        m.stream_context_frames = lambda: context - window
        short_error = (streamed_tokens() - one_pass).abs().max()
    assert exact_error < 1e-6  # float rounding (0 on this machine)
    assert short_error > 5e-4  # 2e-3 to 8e-2 on this machine


def test_window_groups_do_not_change_the_encoder():
    """Test-time windows run `test_window_batch` at a time, each group with its own slice of the
    masks (and none where it blocks nothing): every group size gives the one-call result."""
    m = _module(window=3, enc_layers=4).eval()
    x = torch.randn(20, 4, 1, 16)  # 7 windows, the last padded
    with torch.no_grad():
        m.test_window_batch = 7
        ref = m.encode_frame_query(x)
        for batch in (1, 2, 4):
            m.test_window_batch = batch
            torch.testing.assert_close(m.encode_frame_query(x), ref, atol=1e-6, rtol=1e-5)


def test_window_attention_mask_of_a_group_is_its_slice_of_the_whole_video_mask():
    pad = torch.zeros(1, 12, dtype=torch.bool)
    pad[:, 9:] = True  # T = 9, W = 4: 3 windows, 3 padded frames (one stays in the last)
    blocked = shifted_window_blocked(pad, 4)
    whole = window_attention_mask(blocked, num_queries=2, num_heads=3)  # all windows at once
    parts = [window_attention_mask(blocked[i : i + 1], 2, 3) for i in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    assert blocked[0].any() and not blocked[1].any() and blocked[2].any()


def test_query_index_keeps_positions():
    m = _module().eval()
    fq = torch.randn(1, 3, 4, 16)
    full = m(fq, num_frames=3)
    all_index = torch.arange(4).repeat(3, 1)
    torch.testing.assert_close(
        m(fq, num_frames=3, query_index=all_index)["pred_logits"], full["pred_logits"]
    )
    # a permutation of the tokens with their indices is the same set of object tokens
    perm = torch.tensor([2, 0, 3, 1])
    out = m(fq[:, :, perm], num_frames=3, query_index=perm.repeat(3, 1))
    torch.testing.assert_close(out["pred_logits"], full["pred_logits"], atol=1e-5, rtol=1e-5)


def test_inference_contract_one_frame_and_chunking():
    model = tiny_model().eval()
    with torch.no_grad():
        one = model([make_test_video(1)])[0]
    check_output(one, 1, 80, 120, 5)
    # 2 frames of 64x96 per detector pass
    check_chunked_inference_matches_one_pass(model, make_test_video(7, seed=1), 2 * 64 * 96 + 5)


def test_inference_matches_training_path_detector():
    """The cheap inference path sees the same frame queries as the full Mask2Former forward."""
    model = tiny_model().eval()
    video = make_test_video(3, seed=2)
    with torch.no_grad():
        fq, index, detected = model.encode_frames(video["image"])
        from vis_zoo.modeling.backbone import normalize_and_pad

        images = normalize_and_pad(video["image"], model.pixel_mean, model.pixel_std, 32)
        full = model.sem_seg_head(model.backbone(images.tensor), num_frame_query_layers=1)
    assert index is None and detected.padded_hw == (64, 96) and detected.image_hw == (64, 96)
    torch.testing.assert_close(fq, full["frame_queries"][-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        detected.mask_features.read(0, 3),
        model.vita_module.vita_mask_features(full["pixel_features"]),
    )


def test_token_pruning_keeps_most_foreground_queries():
    model = tiny_model(["MODEL.VITA.TEST_KEEP_QUERY_RATIO", "0.5"]).eval()
    video = make_test_video(3, seed=3)
    with torch.no_grad():
        fq, index, _ = model.encode_frames(video["image"])
        images = video["image"]
        from vis_zoo.modeling.backbone import normalize_and_pad

        im = normalize_and_pad(images, model.pixel_mean, model.pixel_std, 32)
        out = model.sem_seg_head.forward_queries(model.backbone(im.tensor))
        out_model = model([video])[0]
    assert fq.shape == (3, 4, 32) and index.shape == (3, 4)
    no_object = out["pred_logits"].softmax(-1)[..., -1]
    for t in range(3):
        kept = no_object[t, index[t]]
        dropped = no_object[t, [i for i in range(8) if i not in index[t].tolist()]]
        assert kept.max() <= dropped.min()
        torch.testing.assert_close(fq[t], out["frame_queries"][-1, t, index[t]])
    check_output(out_model, 3, 80, 120, 5)


def test_rle_output_and_results_entries():
    """Both output forms become valid YTVIS results entries with the same masks."""
    from pycocotools import mask as mask_util

    from vis_zoo.evaluation.results import video_output_to_results

    model = tiny_model(["MODEL.VIS.OUTPUT_RLE", "True"]).eval()
    video = make_test_video(2, seed=4)
    with torch.no_grad():
        rle_out = model([video])[0]
        model.output_rle = False
        dense_out = model([video])[0]
    assert len(rle_out["pred_masks"]) == 5
    for track in rle_out["pred_masks"]:
        assert len(track) == 2 and all(
            r["size"] == [80, 120] and isinstance(r["counts"], str) for r in track
        )
    id_map = {i: i + 1 for i in range(4)}
    kwargs = dict(length=2, height=80, width=120, contiguous_to_dataset_id=id_map)
    from_rle = video_output_to_results(7, rle_out, **kwargs)
    from_dense = video_output_to_results(7, dense_out, **kwargs)
    assert len(from_rle) == len(from_dense) == 5
    for a, b, dense in zip(from_rle, from_dense, dense_out["pred_masks"]):
        assert a["category_id"] == b["category_id"] and 1 <= a["category_id"] <= 4
        assert a["score"] == pytest.approx(b["score"])
        for t in range(2):
            decoded = mask_util.decode(a["segmentations"][t]).astype(bool)
            assert (torch.from_numpy(decoded) == dense[t]).all()


def test_bad_input_is_reported():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="video 9"):
        model([{"video_id": 9, "image": [], "height": 8, "width": 8}])
    model.train()
    a, b = make_clip(num_frames=2, seed=5), make_clip(num_frames=3, seed=6)
    with pytest.raises(ValueError, match="equal length"):
        model([a, b])


@pytest.mark.parametrize("store", ["cpu", "disk", "recompute"])
def test_feature_stores_give_the_same_output(store):
    """Mask features kept in memory, in a temporary file or recomputed by a second pass: the same
    scores and masks (the recomputation runs on the first pass's chunks, bitwise equal)."""
    video = make_test_video(5, seed=6)
    reference = tiny_model(["MODEL.VIS.TEST_FEATURE_STORE", "device"]).eval()
    model = tiny_model(
        ["MODEL.VIS.TEST_FEATURE_STORE", store, "MODEL.VIS.TEST_CHUNK_PIXELS_CPU", str(2 * 64 * 96)]
    ).eval()
    reference.test_chunk_pixels_cpu = model.test_chunk_pixels_cpu
    with torch.no_grad():
        expected, out = reference([video])[0], model([video])[0]
    assert torch.equal(out["pred_scores"], expected["pred_scores"])
    assert torch.equal(out["pred_labels"], expected["pred_labels"])
    for a, b in zip(out["pred_masks"], expected["pred_masks"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("keep_ratio", [1.0, 0.5])
def test_streamed_vita_module_equals_one_pass(keep_ratio):
    """Encoder blocks of 4 frames (at most 20 per call) and of 2 (the model with at most 4: the
    smallest block), each with 4 layers of 2-frame windows, 8 frames, of context on either side,
    and the cross-attention accumulated block by block give the one-pass result: encoder tokens,
    class logits and masks."""
    from vis_zoo.modeling.mask2former.video_inference import MemoryFeatureStore

    extra = ["MODEL.VITA.ENC_LAYERS", "4", "MODEL.VITA.TEST_KEEP_QUERY_RATIO", str(keep_ratio)]
    model = tiny_model(extra).eval()
    g = torch.Generator().manual_seed(0)
    # larger weights than the init: attention far from uniform
    for p in model.vita_module.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.3
    video = make_test_video(15, seed=7)
    with torch.no_grad():
        fq, index, _ = model.encode_frames(video["image"])
        full = model.vita_module(fq[None], num_frames=15, query_index=index)
        encoded = MemoryFeatureStore(15, torch.device("cpu"))
        logits, embed = model.vita_module.infer_streamed(
            lambda s, e: fq[s:e], 15, encoded, query_index=index, block_frames=20
        )
        vita = model.vita_module
        expected_tokens = vita.encode_frame_query(vita.input_proj_dec(fq[:, :, None]))
        one_pass = model([video])[0]
        model.test_stream_frames = 4  # 15 frames > 4: the streamed path, 2-frame blocks
        streamed = model([video])[0]
    torch.testing.assert_close(encoded.read(0, 15), expected_tokens[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, full["pred_logits"][-1, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embed, full["pred_mask_embed"][-1, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        streamed["pred_scores"], one_pass["pred_scores"], atol=1e-5, rtol=1e-5
    )
    assert torch.equal(streamed["pred_labels"], one_pass["pred_labels"])
    for a, b in zip(streamed["pred_masks"], one_pass["pred_masks"]):
        assert (a != b).float().mean() < 1e-3
