"""VisTR model: parameter count, position encoding, mask-head pieces, training and inference
paths."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from torchvision.ops import deform_conv2d

from vis_zoo.modeling.postprocessing import check_video_output
from vis_zoo_projects.vistr.mask_head import (
    DeformConv3x3,
    DilatedConv3d,
    MHAttentionMap,
    build_instance_fusion_head,
    deform_conv3x3_grid_sample,
)
from vis_zoo_projects.vistr.position_encoding import PositionEmbeddingSine3D


def _official_r50_cfg(depth=50):
    from vis_zoo.config import get_vis_cfg

    cfg = get_vis_cfg("VisTR")
    cfg.merge_from_file("configs/vistr/ytvis19_R50.yaml")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = depth
    return cfg


@pytest.mark.parametrize(
    "depth,total,trainable", [(50, 57_116_129, 56_893_729), (101, 76_056_033, None)]
)
def test_parameter_count_matches_official(depth, total, trainable):
    model = build_model(_official_r50_cfg(depth))
    assert sum(p.numel() for p in model.parameters()) == total
    if trainable is not None:  # conv1 + res2 frozen, as the official layer2-4-only training
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    assert sum(p.numel() for p in model.transformer.parameters()) == 29_571_840
    assert model.query_embed.weight.shape == (360, 384)
    assert model.class_embed.weight.shape == (42, 384)


def test_position_encoding_values_and_order():
    pe = PositionEmbeddingSine3D(num_pos_feats=6)
    mask = torch.zeros(1, 4, 3, 5, dtype=torch.bool)
    pos = pe(mask)
    assert pos.shape == (1, 18, 4, 3, 5)
    two_pi = 2 * math.pi
    t, y, x = 2, 1, 3
    dims = [10000 ** (2 * (k // 2) / 6) for k in range(6)]
    expect_t = [
        (math.sin if k % 2 == 0 else math.cos)((t + 1) / (4 + 1e-6) * two_pi / dims[k])
        for k in range(6)
    ]
    expect_y = [
        (math.sin if k % 2 == 0 else math.cos)((y + 1) / (3 + 1e-6) * two_pi / dims[k])
        for k in range(6)
    ]
    expect_x = [
        (math.sin if k % 2 == 0 else math.cos)((x + 1) / (5 + 1e-6) * two_pi / dims[k])
        for k in range(6)
    ]
    torch.testing.assert_close(
        pos[0, :, t, y, x], torch.tensor(expect_t + expect_y + expect_x), atol=1e-5, rtol=0
    )
    # padding: the normaliser counts only valid cells, so the last valid column reaches 2π
    mask[..., 3:] = True
    pos_padded = pe(mask)
    torch.testing.assert_close(
        pos_padded[0, 13, 0, 0, 2],
        torch.tensor(math.cos(two_pi * 3 / (3 + 1e-6))),
        atol=1e-5,
        rtol=0,
    )


def test_attention_map_softmax_is_joint_over_heads_and_pixels():
    torch.manual_seed(0)
    attn = MHAttentionMap(16, 16, num_heads=4)
    q, k = torch.randn(2, 3, 16), torch.randn(2, 16, 5, 6)
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    mask[1, :, 4:] = True
    w = attn(q, k, mask)
    assert w.shape == (2, 3, 4, 5, 6)
    torch.testing.assert_close(w.flatten(2).sum(-1), torch.ones(2, 3))
    assert not torch.allclose(
        w.sum((-1, -2)), torch.full((2, 3, 4), 1.0)
    )  # not one softmax per head
    assert float(w[1, :, :, :, 4:].abs().sum()) == 0.0


def test_deformable_conv_offsets_are_dy_dx_per_kernel_position():
    torch.manual_seed(0)
    dcn = DeformConv3x3(4, 3)
    x = torch.randn(1, 4, 9, 11)
    zero = torch.zeros(1, 18, 9, 11)
    torch.testing.assert_close(dcn(x, zero), F.conv2d(x, dcn.weight, padding=1))
    # Δy = +1 at every kernel position samples one row lower = a conv of the image shifted up
    offset = zero.clone()
    offset[:, 0::2] = 1.0
    shifted = F.conv2d(x[:, :, 1:], dcn.weight, padding=1)
    torch.testing.assert_close(
        dcn(x, offset)[:, :, 1:-2], shifted[:, :, 1:-1], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    "out_channels", [6, 2]
)  # sample-then-weigh (O >= C) and weigh-then-sample (O < C)
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (3, 4, 1, 6)])
def test_grid_sample_deform_conv_equals_torchvision(shape, out_channels):
    """Our CPU deformable conv (values and all three gradients) = torchvision's kernel."""
    g = torch.Generator().manual_seed(0)
    b, c, h, w = shape
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(b, 18, h, w, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    weight = torch.randn(
        out_channels, c, 3, 3, generator=g, dtype=torch.float64, requires_grad=True
    )
    ref = deform_conv2d(x, offset, weight, padding=(1, 1))
    ours = deform_conv3x3_grid_sample(x, offset, weight)
    torch.testing.assert_close(ours, ref)
    for a, r in zip(
        torch.autograd.grad(ours.square().sum(), [x, offset, weight]),
        torch.autograd.grad(ref.square().sum(), [x, offset, weight]),
    ):
        torch.testing.assert_close(a, r)
    with torch.no_grad():  # chunked over samples at inference
        torch.testing.assert_close(
            deform_conv3x3_grid_sample(x, offset, weight, sample_chunk=1), ref
        )


@pytest.mark.parametrize("shape", [(2, 4, 4, 6, 8), (1, 3, 5, 7, 3)])
def test_phase_split_dilated_conv3d_equals_conv3d(shape):
    torch.manual_seed(0)
    conv = DilatedConv3d(shape[1], 5).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = conv(x)  # grad enabled on CPU: the parity-split path
    ref = F.conv3d(x, conv.weight, conv.bias, padding=2, dilation=2)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0]
    )


def test_dilated_conv3d_inference_avoids_the_reference_kernel_and_matches_conv3d():
    """A batch-1 clip small enough that PyTorch's own choice is the slow `slow_conv_dilated3d`."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    conv = DilatedConv3d(6, 4)
    x = torch.randn(1, 6, 3, 10, 12)
    with torch.no_grad():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours = conv(x)
        ref = F.conv3d(x, conv.weight, conv.bias, padding=2, dilation=2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    ops = {e.key for e in prof.key_averages()}
    if torch.backends.mkldnn.is_available():
        assert "aten::slow_conv_dilated3d" not in ops, sorted(ops)


def test_mask_prior_sets_the_initial_foreground_probability():
    torch.manual_seed(0)
    official = build_instance_fusion_head(24)  # PyTorch default init: a random bias near 0
    assert abs(float(official[-1].bias)) < 0.5
    head = build_instance_fusion_head(24, prior_prob=0.05)
    torch.testing.assert_close(head[-1].bias.sigmoid(), torch.tensor([0.05]))
    with torch.no_grad():  # the output starts near the prior, not at p = 0.5
        prob = head(torch.randn(2, 24, 3, 8, 8)).sigmoid()
    assert 0.005 < float(prob.mean()) < 0.3
    with pytest.raises(ValueError, match="MASK_PRIOR_PROB"):
        build_instance_fusion_head(24, prior_prob=1.0)


def _slot_share_of_lay1_output(model):
    """Spread of the mask head's lay1 output across the slots of a frame, over its total spread.

    Random unit-scale encoder memory and queries; the attention maps are the only slot-specific
    input.
    """
    gen = torch.Generator().manual_seed(1)
    c, frames, slots, h, w = model.transformer.d_model, 2, 4, 4, 6
    memory = torch.randn(frames, c, h, w, generator=gen)
    queries = torch.randn(frames, slots, c, generator=gen)
    with torch.no_grad():
        attn = model.bbox_attention(queries, memory)
        x = torch.cat(
            [memory.unsqueeze(1).expand(-1, slots, -1, -1, -1).flatten(0, 1), attn.flatten(0, 1)], 1
        )
        y = model.mask_head.lay1(x).view(frames, slots, -1, h, w)
    return float(y.std(1).mean() / y.std())


def test_attention_map_init_gain_scales_only_the_attention_channels(tiny_cfg):
    models = {}
    for gain in (1.0, 100.0):
        cfg = tiny_cfg()
        cfg.MODEL.VISTR.ATTENTION_MAP_INIT_GAIN = gain
        torch.manual_seed(0)
        models[gain] = build_model(cfg)
    official, scaled = models[1.0], models[100.0]
    hidden = official.transformer.d_model
    lay1 = official.mask_head.lay1.weight
    torch.testing.assert_close(scaled.mask_head.lay1.weight[:, :hidden], lay1[:, :hidden])
    torch.testing.assert_close(scaled.mask_head.lay1.weight[:, hidden:], 100 * lay1[:, hidden:])
    others = {k: v for k, v in scaled.state_dict().items() if k != "mask_head.lay1.weight"}
    for name, value in official.state_dict().items():
        if name in others:
            torch.testing.assert_close(others[name], value, msg=name)
    # at the official init the slots barely differ after lay1 (every slot gets the same mask);
    # with the gain the attention maps are a visible part of the signal
    assert _slot_share_of_lay1_output(official) < 0.01
    assert _slot_share_of_lay1_output(scaled) > 0.05


def test_one_frame_checkpoint_inflates_to_the_clip(tiny_cfg, tmp_path):
    from vis_zoo.engine import AtomicDetectionCheckpointer

    cfg1 = tiny_cfg()
    cfg1.MODEL.VISTR.NUM_FRAMES = 1
    cfg1.MODEL.VIS.TEST_WINDOW_SIZE = 1
    cfg1.MODEL.VIS.TEST_WINDOW_STRIDE = 1
    torch.manual_seed(0)
    image_model = build_model(cfg1)
    AtomicDetectionCheckpointer(image_model, save_dir=str(tmp_path)).save("stage1")

    torch.manual_seed(1)
    clip_model = build_model(tiny_cfg())
    AtomicDetectionCheckpointer(clip_model).load(str(tmp_path / "stage1.pth"))
    slots = image_model.query_embed.weight
    queries = clip_model.query_embed.weight.view(clip_model.num_frames, clip_model.num_slots, -1)
    for t in range(clip_model.num_frames):  # frame-major: row t·N + i is slot i at frame t
        torch.testing.assert_close(queries[t], slots)
    image_state = image_model.state_dict()
    for name, value in clip_model.state_dict().items():
        if name != "query_embed.weight":
            torch.testing.assert_close(value, image_state[name], msg=name)

    # a checkpoint of another slot count is not inflated: detectron2 skips it as a shape mismatch
    cfg_other = tiny_cfg()
    cfg_other.MODEL.VISTR.NUM_SLOTS = 5
    torch.manual_seed(2)
    other = build_model(cfg_other)
    before = other.query_embed.weight.detach().clone()
    AtomicDetectionCheckpointer(other).load(str(tmp_path / "stage1.pth"))
    torch.testing.assert_close(other.query_embed.weight, before)


def test_training_forward_backward(tiny_model, make_video):
    tiny_model.train()
    batch = [make_video(3, seed=1), make_video(3, height=64, width=80, seed=2)]
    losses = tiny_model(batch)
    expected = {
        "loss_ce",
        "loss_bbox",
        "loss_giou",
        "loss_mask",
        "loss_dice",
        "loss_ce_0",
        "loss_bbox_0",
        "loss_giou_0",
    }
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    named = dict(tiny_model.named_parameters())
    for name in (
        "backbone.res3.0.conv1.weight",
        "input_proj.weight",
        "query_embed.weight",
        "mask_head.dcn.weight",
        "mask_head.conv_offset.weight",
        "insmask_head.9.weight",
        "bbox_attention.q_linear.weight",
        "transformer.encoder.layers.0.self_attn.in_proj_weight",
    ):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    assert not named["backbone.stem.conv1.weight"].requires_grad


def test_training_video_without_objects(tiny_model, make_video):
    tiny_model.train()
    losses = tiny_model([make_video(3, with_objects=False)])
    assert float(losses["loss_mask"]) == 0.0 and float(losses["loss_bbox"]) == 0.0
    assert float(losses["loss_ce"]) > 0
    sum(losses.values()).backward()
    assert tiny_model.class_embed.weight.grad.abs().sum() > 0
    # no matched slot: the mask head still runs (on one slot) so that every parameter gets a
    # gradient
    assert (
        tiny_model.mask_head.dcn.weight.grad is not None
        and tiny_model.insmask_head[9].weight.grad is not None
    )


def test_training_masks_only_matched_slots_same_losses_and_gradients(tiny_cfg, make_video):
    """Training runs the mask head on the matched slots only; losses and gradients must be those of
    the full head (every slot's masks, then the criterion picks the matched entries)."""
    from vis_zoo.modeling.backbone import normalize_and_pad, video_frames

    cfg = tiny_cfg()
    cfg.MODEL.VISTR.NUM_SLOTS = 5
    cfg.MODEL.VISTR.DROPOUT = 0.0
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    batch = [make_video(3, seed=1), make_video(3, seed=2, with_objects=False)]
    head_batch = []
    model.mask_head.register_forward_hook(lambda m, inputs, out: head_batch.append(out.shape[0]))

    def losses_and_grads(losses):
        model.zero_grad()
        sum(losses.values()).backward()
        return {k: float(v) for k, v in losses.items()}, {
            n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
        }

    fast, fast_grads = losses_and_grads(model(batch))
    # video 0 has 2 tracks -> 2 slots per video (video 1's list is padded) × 2 videos × 3 frames
    assert head_batch == [2 * 2 * 3]
    frames, _ = video_frames(batch)
    images = normalize_and_pad(
        frames, model.pixel_mean, model.pixel_std, model.backbone.size_divisibility
    )
    outputs = model.clip_forward(model.frame_features(images), len(batch))
    assert head_batch[-1] == 2 * 3 * 5
    full, full_grads = losses_and_grads(
        model.criterion(outputs, model.prepare_targets(batch, images.tensor.shape[-2:]))
    )
    assert full.keys() == fast.keys()
    for key in full:
        assert fast[key] == pytest.approx(full[key], rel=1e-5, abs=1e-6), key
    assert fast_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert fast_grads["mask_head.dcn.weight"].abs().sum() > 0


def test_training_rejects_wrong_clip_length(tiny_model, make_video):
    tiny_model.train()
    with pytest.raises(ValueError, match="NUM_FRAMES"):
        tiny_model([make_video(4)])


def test_batched_clips_equal_one_by_one(tiny_model, make_video):
    """The mask path (attention maps, FPN, 3-D conv) is batched over videos; it must not mix
    them."""
    tiny_model.eval()
    from vis_zoo.modeling.backbone import normalize_and_pad, video_frames

    videos = [make_video(3, seed=3, labelled=False), make_video(3, seed=4, labelled=False)]

    def run(batch):
        frames, _ = video_frames(batch)
        images = normalize_and_pad(frames, tiny_model.pixel_mean, tiny_model.pixel_std)
        with torch.no_grad():
            return tiny_model.clip_forward(tiny_model.frame_features(images), len(batch))

    both = run(videos)
    for b, video in enumerate(videos):
        single = run([video])
        for key in ("pred_logits", "pred_boxes", "pred_masks"):
            torch.testing.assert_close(both[key][b], single[key][0], atol=1e-4, rtol=1e-4)
    # chunked mask head (test time) gives the same masks as all frames at once
    frames, _ = video_frames(videos[:1])
    images = normalize_and_pad(frames, tiny_model.pixel_mean, tiny_model.pixel_std)
    with torch.no_grad():
        chunked = tiny_model.clip_forward(tiny_model.frame_features(images), 1, mask_head_chunk=1)
    torch.testing.assert_close(
        chunked["pred_masks"][0], both["pred_masks"][0], atol=1e-4, rtol=1e-4
    )


def _check_output(out, length, height, width, num_classes):
    check_video_output(out, num_frames=length, image_size=(height, width), num_classes=num_classes)


@pytest.mark.parametrize("length", [1, 3, 7])
def test_inference_any_length(tiny_model, make_video, length):
    """One frame (tiled to T), exactly T, and a long video (windows + association); the frames are
    at a smaller size than the original, so masks must be upsampled to (height, width)."""
    tiny_model.eval()
    # bias the class head towards class 1 so that tracks are emitted (index 0 would be dropped)
    with torch.no_grad():
        tiny_model.class_embed.bias.zero_()
        tiny_model.class_embed.bias[2] = 5.0
    video = make_video(length, height=48, width=64, labelled=False, seed=5)
    video["height"], video["width"] = 96, 128
    out = tiny_model([video])[0]
    _check_output(out, length, 96, 128, 3)
    assert len(out["pred_scores"]) > 0
    assert (out["pred_labels"] == 1).all()


def test_inference_rle_output_and_track_cap(tiny_cfg, make_video):
    cfg = tiny_cfg()
    cfg.MODEL.VIS.OUTPUT_RLE = True
    cfg.MODEL.VIS.MAX_NUM_TRACKS = 1
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.class_embed.bias.zero_()
        model.class_embed.bias[2] = 5.0
    for length in (2, 6):
        out = model([make_video(length, labelled=False, seed=6)])[0]
        _check_output(out, length, 64, 96, 3)
        assert len(out["pred_scores"]) <= 1


def test_window_size_must_equal_clip_length(tiny_cfg):
    cfg = tiny_cfg()
    cfg.MODEL.VIS.TEST_WINDOW_SIZE = 5
    with pytest.raises(ValueError, match="TEST_WINDOW_SIZE"):
        build_model(cfg)


def test_official_post_processing_rules(tiny_model):
    """score = mean over frames of the max class prob (index 0 included), class = the most frequent
    per-frame argmax, empty slots dropped, class index 0 dropped, frames scoring < 0.001 blanked."""
    tiny_model.eval()
    probs = torch.zeros(3, 2, 5)  # [T, N, K+2], K = 3
    probs[0, 0] = torch.tensor([0.1, 0.0, 0.6, 0.1, 0.2])
    probs[1, 0] = torch.tensor([0.0, 0.0, 0.5, 0.2, 0.3])
    probs[2, 0] = torch.tensor([0.0001, 0.0001, 0.0002, 0.0005, 0.9991])
    probs[:, 1] = torch.tensor([0.7, 0.1, 0.1, 0.0, 0.1])  # slot 1: mode is index 0
    mask_logits = torch.full((3, 2, 4, 6), -5.0)
    mask_logits[:, :, 1:3, 2:5] = 5.0
    window = {"probs": probs, "mask_logits": mask_logits}
    out = tiny_model._single_window_output(window, 3, (8, 12))
    assert out["pred_labels"].tolist() == [1]  # index 2 -> contiguous class 1; slot 1 dropped
    torch.testing.assert_close(out["pred_scores"], torch.tensor([(0.6 + 0.5 + 0.0005) / 3]))
    masks = out["pred_masks"][0]
    assert masks.shape == (3, 8, 12) and masks[0].any() and masks[1].any() and not masks[2].any()
    # a shorter video (tiled to T by the caller) keeps only its own frames
    out = tiny_model._single_window_output(window, 2, (8, 12))
    torch.testing.assert_close(out["pred_scores"], torch.tensor([0.55]))
    # no mask pixel anywhere: nothing is returned
    window["mask_logits"] = torch.full((3, 2, 4, 6), -5.0)
    assert len(tiny_model._single_window_output(window, 3, (8, 12))["pred_scores"]) == 0


class _OnceInOrderFrames:
    """A lazy frame sequence (like the demo's reader) that fails if a frame is read twice or before
    a
    frame it follows, and records the reads."""

    def __init__(self, frames):
        self.frames = frames
        self.reads = []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        if isinstance(index, slice) or index < 0:
            raise AssertionError(f"unexpected index {index!r}")
        assert index not in self.reads, f"frame {index} read twice (reads so far: {self.reads})"
        assert not self.reads or index > self.reads[-1], (
            f"frame {index} read after {self.reads[-1]}"
        )
        self.reads.append(index)
        return self.frames[index]

    def __iter__(self):  # materialising the whole video is what the lazy path must not do
        raise AssertionError("the whole video was iterated")


@pytest.mark.parametrize("length", [2, 7])
def test_inference_reads_a_lazy_video_once_in_order(tiny_model, make_video, length):
    """Short (tiled) and long (windowed) videos: every frame indexed once, ascending, same outputs
    as a list."""
    tiny_model.eval()
    with torch.no_grad():
        tiny_model.class_embed.bias.zero_()
        tiny_model.class_embed.bias[2] = 5.0
    video = make_video(length, labelled=False, seed=8)
    expected = tiny_model([video])[0]
    lazy = _OnceInOrderFrames(video["image"])
    out = tiny_model([dict(video, image=lazy)])[0]
    assert lazy.reads == list(range(length))
    assert len(out["pred_scores"]) == len(expected["pred_scores"]) > 0
    torch.testing.assert_close(out["pred_scores"], expected["pred_scores"])
    assert torch.equal(out["pred_labels"], expected["pred_labels"])
    for a, b in zip(out["pred_masks"], expected["pred_masks"]):
        assert torch.equal(a, b)
    assert tiny_model.processed_frames(length) == max(length, tiny_model.num_frames)


def test_benchmark_counts_gflops_per_frame_of_the_whole_clip(tiny_model):
    """A 2-frame video is tiled to the T = 3 clip: the benchmark's GFLOPs/frame divides by 3, not
    2."""
    from vis_zoo.zoo.benchmark import count_gflops_per_frame

    res = count_gflops_per_frame(tiny_model.eval(), 2, 64, 96)
    assert (res["flops_frames"], res["flops_processed_frames"]) == (2, 3)
    assert (
        res["gflops_per_frame"] == pytest.approx(res["gflops_per_video"] / 3)
        and res["gflops_per_video"] > 0
    )
