"""Mask2Former-VIS: parameter counts (the Mask2Former detector, shared with MinVIS), the clip
decoder (3-D position encoding, attention over every frame, the image decoder unchanged), clip-level
training, one-pass inference equal to the official computation, windows for long videos and the
output contract."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from vis_zoo.engine.setup import build_config
from vis_zoo.modeling.backbone import normalize_and_pad
from vis_zoo.modeling.mask2former import (
    MultiScaleMaskedTransformerDecoder,
    VideoMultiScaleMaskedTransformerDecoder,
)
from vis_zoo.modeling.mask2former.criterion import point_sampled_mask_losses
from vis_zoo.modeling.position_encoding import PositionEmbeddingSine2D, PositionEmbeddingSineTime
from vis_zoo.modeling.postprocessing import check_video_output
from vis_zoo.zoo.speed import random_video

from tests.projects.mask2former_clips import (
    TINY_DETECTOR_3_LAYERS,
    build_tiny_model,
    check_chunked_inference_matches_one_pass,
    check_output,
    make_clip,
    make_test_video,
)

# The shared tiny detector (no datasets: 4 classes) with 3 decoder layers.
TINY = TINY_DETECTOR_3_LAYERS


# A decoder alone: 16 channels, 5 queries, 3 classes, 3 layers (+ the initial prediction).
TINY_DECODER = dict(
    in_channels=16,
    num_classes=3,
    hidden_dim=16,
    num_queries=5,
    nheads=2,
    dim_feedforward=32,
    dec_layers=4,
    mask_dim=16,
)


def tiny_model(extra=()):
    return build_tiny_model("configs/mask2former_vis/synthetic_R18.yaml", extra=extra)


# sha256 of the sorted "name (shape)" lines of the official model's state_dict
# (facebookresearch/Mask2Former @ 9b0651c, built from video_maskformer2_R{50,101}_bs16_8ep.yaml)
OFFICIAL_LAYOUT_SHA256 = {
    "ytvis19_R50": "87a9c44dacc5f7159aff3d52465dd75f4d6d007fbaca9d74ca8e0b8b3ce9f3df",
    "ytvis19_R101": "8018e435ec6b58f31bb724c6368fe3d15405b5603dfae9e697544a8b54311d1c",
}


@pytest.mark.parametrize(
    "config, params, tensors", [("ytvis19_R50", 43_959_977, 558), ("ytvis19_R101", 62_899_881, 813)]
)
def test_official_parameter_count_and_layout(config, params, tensors):
    """The official VideoMaskFormer built from video_maskformer2_R50_bs16_8ep.yaml (R-101) has
    43,959,977 (62,899,881) parameters in 558 (813) tensors; ours has the same names and shapes,
    which are also MinVIS's (one detector serves both)."""
    model = build_model(
        build_config(f"configs/mask2former_vis/{config}.yaml", ["MODEL.DEVICE", "cpu"])
    )
    assert sum(p.numel() for p in model.parameters()) == params
    state = model.state_dict()
    assert len(state) == tensors
    layout = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(state.items()))
    assert hashlib.sha256(layout.encode()).hexdigest() == OFFICIAL_LAYOUT_SHA256[config]
    if config == "ytvis19_R50":
        minvis = build_model(
            build_config("configs/minvis/ytvis19_R50.yaml", ["MODEL.DEVICE", "cpu"])
        )
        assert {k: v.shape for k, v in state.items()} == {
            k: v.shape for k, v in minvis.state_dict().items()
        }


def official_3d_position_encoding(num_frames, height, width, channels):
    """The official PositionEmbeddingSine3D (normalised) written out per (t, y, x): the 2-D encoding
    (y then x, channels/2 each) plus a temporal encoding over all channels. [T, C, H, W]."""
    half, eps, scale = channels // 2, 1e-6, 2 * math.pi
    out = torch.zeros(num_frames, channels, height, width, dtype=torch.float64)
    for c in range(channels):
        f_t = 10000 ** (2 * (c // 2) / channels)
        f_s = 10000 ** (2 * ((c % half) // 2) / half)
        wave = math.sin if c % 2 == 0 else math.cos
        for t in range(num_frames):
            time_term = wave((t + 1) / (num_frames + eps) * scale / f_t)
            for y in range(height):
                for x in range(width):
                    coord = (y + 1) / (height + eps) if c < half else (x + 1) / (width + eps)
                    out[t, c, y, x] = wave(coord * scale / f_s) + time_term
    return out


def test_3d_position_encoding_equals_the_official_formula():
    spatial = PositionEmbeddingSine2D(8, normalize=True)(torch.zeros(1, 3, 5, dtype=torch.bool))[0]
    time = PositionEmbeddingSineTime(16)(4)  # [T, C]
    ours = spatial[None] + time[:, :, None, None]
    torch.testing.assert_close(
        ours.double(), official_3d_position_encoding(4, 3, 5, 16), atol=1e-5, rtol=0
    )


def test_clip_decoder_keys_span_every_frame_and_the_image_decoder_is_unchanged():
    """Clip memory: [T*h*w, B, C], frame-major, with the time term; a 1-frame clip without it (time
    encoding removed) is the image decoder.
    """
    torch.manual_seed(0)
    image = MultiScaleMaskedTransformerDecoder(**TINY_DECODER).eval()
    clip = VideoMultiScaleMaskedTransformerDecoder(**TINY_DECODER).eval()
    clip.load_state_dict(image.state_dict())  # the same tensors, names included
    assert set(clip.state_dict()) == set(image.state_dict())
    g = torch.Generator().manual_seed(1)
    levels = [torch.randn(2, 3, 16, s, s + 1, generator=g) for s in (2, 4, 8)]  # B=2, T=3
    mask_features = torch.randn(2, 3, 16, 16, 17, generator=g)
    src, pos, sizes = clip._memory(levels)
    assert src[2].shape == (3 * 8 * 9, 2, 16) and sizes[2] == (8, 9)
    # key t*h*w + k of video b is pixel k of frame t of video b
    frame_src, frame_pos, _ = image._memory([lv.flatten(0, 1) for lv in levels])
    torch.testing.assert_close(src[1][4 * 5 * 2 + 7, 1], frame_src[1][7, 1 * 3 + 2])
    time = PositionEmbeddingSineTime(16)(3)
    torch.testing.assert_close(pos[1][4 * 5 * 2 + 7, 1], frame_pos[1][7, 1 * 3 + 2] + time[2])
    with torch.no_grad():
        out = clip(levels, mask_features)
    assert out["pred_logits"].shape == (2, 5, 4) and out["pred_masks"].shape == (2, 5, 3, 16, 17)
    assert len(out["aux_outputs"]) == 3 and out["aux_outputs"][0]["pred_masks"].shape == (
        2,
        5,
        3,
        16,
        17,
    )
    # one frame, the time term taken out: the image decoder on that frame
    clip.time_pe_layer.forward = lambda num_frames, device=None: torch.zeros(num_frames, 16)
    with torch.no_grad():
        one = clip([lv[:, :1] for lv in levels], mask_features[:, :1])
        ref = image([lv[:, 0] for lv in levels], mask_features[:, 0])
    torch.testing.assert_close(one["pred_logits"], ref["pred_logits"])
    torch.testing.assert_close(one["pred_masks"][:, :, 0], ref["pred_masks"])


def test_clip_masks_attend_across_frames():
    """A query's attention mask covers every frame: changing frame 1's features changes what the
    queries see (so their frame-0 masks too), unlike an image decoder run per frame."""
    torch.manual_seed(0)
    clip = VideoMultiScaleMaskedTransformerDecoder(**TINY_DECODER).eval()
    g = torch.Generator().manual_seed(2)
    levels = [torch.randn(1, 2, 16, s, s, generator=g) for s in (2, 4, 8)]
    mask_features = torch.randn(1, 2, 16, 16, 16, generator=g)
    with torch.no_grad():
        ref = clip(levels, mask_features)["pred_masks"][:, :, 0]
        changed = [lv.clone() for lv in levels]
        for lv in changed:
            lv[:, 1] += 1.0
        new = clip(changed, mask_features)["pred_masks"][:, :, 0]
    assert not torch.allclose(ref, new)


def test_per_frame_mask_losses_as_the_official_video_criterion():
    """Every frame mask of a clip is one term: BCE = sum over the N*T frame masks of their mean
    point loss / num_masks, dice likewise (official VideoSetCriterion); T = 1 is the per-instance
    form.
    """
    g = torch.Generator().manual_seed(0)
    src = torch.randn(3, 2, 8, 8, generator=g)
    tgt = (torch.rand(3, 2, 8, 8, generator=g) > 0.5).float()
    kwargs = dict(num_points=64, oversample_ratio=1.0, importance_sample_ratio=0.0)
    torch.manual_seed(5)
    bce, dice = point_sampled_mask_losses(src, tgt, 3.0, per_frame=True, **kwargs)
    torch.manual_seed(5)
    bce_frames, dice_frames = point_sampled_mask_losses(
        src.flatten(0, 1), tgt.flatten(0, 1), 3.0, **kwargs
    )
    torch.testing.assert_close(bce, bce_frames)
    torch.testing.assert_close(dice, dice_frames)
    torch.manual_seed(5)
    bce_clip, _ = point_sampled_mask_losses(
        src, tgt, 3.0, **kwargs
    )  # one vector per instance (VITA)
    torch.testing.assert_close(bce, 2 * bce_clip)  # 2 frames: twice the per-instance mean
    torch.manual_seed(5)
    one = point_sampled_mask_losses(src[:, :1], tgt[:, :1], 3.0, per_frame=True, **kwargs)
    torch.manual_seed(5)
    torch.testing.assert_close(
        one, point_sampled_mask_losses(src[:, :1], tgt[:, :1], 3.0, **kwargs)
    )


def test_training_clip_losses_and_gradients():
    model = tiny_model().train()
    assert model.criterion.per_frame_mask_losses
    # 2 clips of 3 frames, one track absent from one frame
    losses = model([make_clip(seed=1, absent=(1, 1)), make_clip(seed=2)])
    assert set(losses) == {f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
    assert all(torch.isfinite(v) and v.dim() == 0 and v >= 0 for v in losses.values())
    sum(losses.values()).backward()
    unused = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    # The pixel decoder's level embedding reaches the loss only through the deformable attention's
    # offsets and weights, whose projections start at zero (Deformable DETR's initialisation).
    assert unused == ["sem_seg_head.pixel_decoder.transformer.level_embed"]


def test_training_matches_clip_targets_over_every_frame():
    """The matcher and the losses see clip masks [Q, T, h, w] against clip targets [G, T, H, W]."""
    model = tiny_model().train()
    seen = []
    original = model.criterion.forward
    model.criterion.forward = lambda outputs, targets: (
        seen.append((outputs, targets)),
        original(outputs, targets),
    )[1]
    model([make_clip(num_frames=3, seed=3, absent=(0, 1))])
    ((outputs, targets),) = seen
    assert outputs["pred_masks"].shape[:3] == (1, 8, 3)
    assert targets[0]["masks"].shape == (2, 3, 64, 96) and targets[0]["ids"][0].tolist() == [
        0,
        -1,
        0,
    ]
    with pytest.raises(ValueError, match="same number of frames"):
        model([make_clip(num_frames=2), make_clip(num_frames=3)])


def test_one_window_equals_the_official_whole_video_computation():
    """A video within one window: the top-k (query, class) pairs of the clip decoder's full forward
    on all frames (its /4 masks upsampled to the padded input, cropped, resized: the official
    inference_video), whatever the detector pass size."""
    model = tiny_model().eval()
    video = make_test_video(5, seed=2, h=60, w=90, out_hw=(80, 120))  # padded to 64 x 96
    with torch.no_grad():
        out = model([video])[0]
        images = normalize_and_pad(video["image"], model.pixel_mean, model.pixel_std, 32)
        decoded = model.sem_seg_head.pixel_decoder(model.backbone(images.tensor))
        full = model.sem_seg_head.predictor(
            [f[None] for f in decoded["multi_scale_features"]], decoded["mask_features"][None]
        )
    scores = full["pred_logits"][0].softmax(-1)[:, :-1]
    top_scores, top_idx = scores.flatten().topk(5)
    torch.testing.assert_close(out["pred_scores"], top_scores, atol=1e-5, rtol=1e-4)
    assert torch.equal(out["pred_labels"], top_idx % 4)
    logits = full["pred_masks"][0][top_idx // 4]  # [k, T, h4, w4]
    logits = F.interpolate(logits, size=(64, 96), mode="bilinear", align_corners=False)[
        ..., :60, :90
    ]
    expected = F.interpolate(logits, size=(80, 120), mode="bilinear", align_corners=False) > 0
    for mask, ref in zip(out["pred_masks"], expected):
        assert (mask != ref).float().mean() < 1e-3
    check_chunked_inference_matches_one_pass(model, make_test_video(7, seed=1), 2 * 64 * 96)


def test_long_video_windows_cover_every_frame():
    """Windows of 4 frames every 2 joined by the association: tracks with pixels in the last frame,
    the window size read from MODEL.VIS.TEST_WINDOW_SIZE, the decoder never given more than 4
    frames.
    """
    model = tiny_model(
        ["MODEL.VIS.TEST_WINDOW_SIZE", "4", "MODEL.VIS.TEST_WINDOW_STRIDE", "2"]
    ).eval()
    clip_lengths = []
    original = model.sem_seg_head.predictor.forward_queries

    def recorded(x, level_mask_features, num_frame_query_layers=1):
        clip_lengths.append(x[0].shape[1])
        return original(x, level_mask_features, num_frame_query_layers)

    model.sem_seg_head.predictor.forward_queries = recorded
    with torch.no_grad():
        out = model([make_test_video(11, seed=3)])[0]
    check_output(out, 11, 80, 120, 5)
    assert clip_lengths == [4, 4, 4, 4, 4]  # [0,4) [2,6) [4,8) [6,10) [7,11)
    assert any(masks[-1].any() for masks in out["pred_masks"])
    with pytest.raises(ValueError, match="TEST_WINDOW_SIZE"):
        tiny_model(["MODEL.VIS.TEST_WINDOW_SIZE", "-1"])


def test_long_video_memory_is_bounded_by_the_window(monkeypatch):
    """100 small frames, 16-frame windows every 8: at no time are more than one window and one
    detector pass of per-frame features held, each frame's features are computed once, and every
    frame has its masks."""
    from vis_zoo_projects.mask2former_vis import meta_arch

    caches = []

    class RecordingCache(meta_arch.FrameFeatureCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.most_held = 0
            caches.append(self)

        def get(self, frame_ids):
            out = super().get(frame_ids)
            self.most_held = max(self.most_held, len(self))
            return out

    monkeypatch.setattr(meta_arch, "FrameFeatureCache", RecordingCache)
    model = tiny_model(
        [
            "MODEL.VIS.TEST_WINDOW_SIZE",
            "16",
            "MODEL.VIS.TEST_WINDOW_STRIDE",
            "8",
            "MODEL.VIS.OUTPUT_RLE",
            "True",
            "MODEL.VIS.TEST_CHUNK_PIXELS_CPU",
            str(3 * 32 * 64),
        ]
    ).eval()
    with torch.no_grad():
        out = model([random_video(100, 32, 64, seed=4)])[0]
    check_video_output(out, num_frames=100, image_size=(32, 64), num_classes=4, rle=True)
    (cache,) = caches
    assert cache.chunk_size == 3 and cache.num_computed == 100
    assert cache.most_held <= 16 + 3
    assert any(track[-1] is not None for track in out["pred_masks"])


def test_bad_settings_and_input_name_the_key_or_video():
    with pytest.raises(ValueError, match="VideoMultiScaleMaskedTransformerDecoder"):
        tiny_model(
            ["MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "MultiScaleMaskedTransformerDecoder"]
        )
    with pytest.raises(ValueError, match="TEST_WINDOW_STRIDE"):
        tiny_model(["MODEL.VIS.TEST_WINDOW_STRIDE", "0"])
    with pytest.raises(ValueError, match="video 9"):
        tiny_model().eval()([{"video_id": 9, "image": [], "height": 8, "width": 8}])
