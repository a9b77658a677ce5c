"""Every method at the scale users run it: the R-50 YouTube-VIS 2019 config at 360x640 (random
weights,
short video) and a long video (120 frames, small frames) through the real inference path.

The toy configs never exceed 512 attention keys per feature level, so they could not see the NaN
that
PyTorch's blocked CPU attention gave Mask2Former's masked attention at 360x640; these tests run what
a
user runs, and for VITA and MinVIS force the masked attention into the case that used to break
(every
query sees only the lower half of the frame, so its first 512 keys are all blocked).
"""

import math

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from pycocotools import mask as mask_util
from torch import nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.engine.setup import build_config
from vis_zoo.evaluation.results import video_output_to_results
from vis_zoo.modeling.attention import MaskedMultiheadAttention
from vis_zoo.modeling.mask2former.transformer_decoder import MultiScaleMaskedTransformerDecoder
from vis_zoo.modeling.postprocessing import check_video_output
from vis_zoo.zoo.speed import random_video

REAL_SIZE = (360, 640)
METHODS = ["vita", "minvis", "ifc", "vistr", "seqformer", "mask2former_vis"]
# The methods built on Mask2Former's masked attention.
MASKED_ATTENTION_METHODS = ["vita", "minvis", "mask2former_vis"]


def _build(config_file: str, opts=()):
    cfg = build_config(config_file, ["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


# VisTR drops tracks with no mask pixel or whose most frequent class is index 0 (as the official
# code,
# whose index 0 is no dataset class): a random-weight VisTR may legitimately predict nothing.
MAY_PREDICT_NOTHING = {"vistr"}


def _check_valid_output(
    cfg, output: dict, num_frames: int, height: int, width: int, allow_empty: bool = False
) -> None:
    """Finite scores in [0, 1], labels among the config's classes, per-frame masks at the input
    size,
    and results entries the evaluator accepts (one RLE per frame)."""
    scores = output["pred_scores"]
    check_video_output(
        output,
        num_frames=num_frames,
        image_size=(height, width),
        num_classes=num_classes_from_config(cfg),
    )
    assert allow_empty or len(scores) > 0, "no predictions at all"
    assert torch.isfinite(scores).all(), f"non-finite scores: {scores}"
    results = video_output_to_results(7, output, length=num_frames, height=height, width=width)
    assert len(results) == len(scores)
    for entry in results:
        assert math.isfinite(entry["score"])
        assert len(entry["segmentations"]) == num_frames
        for rle in entry["segmentations"]:
            assert rle is None or list(rle["size"]) == [height, width]


@pytest.fixture
def lower_half_attention(monkeypatch):
    """Make Mask2Former's masked attention let every query see only the lower half of each level:
    the
    keys are row-major, so at 360x640 (960 keys at 1/16, 3,600 at 1/8) each query's first 512 keys
    are
    blocked while later ones are allowed -- the case PyTorch's blocked CPU kernel turned into NaN.
    (Mask2Former-VIS's keys are frame-major: its queries see the later half of the clip's keys.)"""
    original = MultiScaleMaskedTransformerDecoder._attn_mask_from_logits

    def lower_half_only(self, mask_logits):
        blocked = original(self, mask_logits)  # [N*heads, Q, h*w]
        height = mask_logits.shape[-2]
        blocked = blocked.view(*blocked.shape[:2], height, -1).clone()
        blocked[:, :, : height // 2] = True
        blocked[:, :, height // 2 :] = False
        return blocked.flatten(2)

    monkeypatch.setattr(
        MultiScaleMaskedTransformerDecoder, "_attn_mask_from_logits", lower_half_only
    )


@pytest.mark.parametrize("method", METHODS)
def test_r50_ytvis_config_at_360x640(method, request):
    """Random-weight R-50 model, 2 frames at 360x640, end to end: finite outputs, valid results."""
    if method in MASKED_ATTENTION_METHODS:
        request.getfixturevalue("lower_half_attention")
    cfg, model = _build(f"configs/{method}/ytvis19_R50.yaml")
    video = random_video(2, *REAL_SIZE, seed=1)
    with torch.no_grad():
        output = model([video])[0]
    _check_valid_output(cfg, output, 2, *REAL_SIZE, allow_empty=method in MAY_PREDICT_NOTHING)


@pytest.mark.parametrize("method", MASKED_ATTENTION_METHODS)
def test_masked_attention_equals_explicit_softmax_at_360x640(
    method, lower_half_attention, monkeypatch
):
    """The same model and video with every attention call routed through PyTorch's explicit-softmax
    path with -inf masks (what the official code runs, ``need_weights=True``): same scores and
    masks."""
    cfg, model = _build(f"configs/{method}/ytvis19_R50.yaml")
    video = random_video(2, *REAL_SIZE, seed=1)
    with torch.no_grad():
        ours = model([video])[0]

    def explicit_softmax(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=False,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        return nn.MultiheadAttention.forward(
            self,
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=True,
            attn_mask=attn_mask,
        )

    monkeypatch.setattr(MaskedMultiheadAttention, "forward", explicit_softmax)
    with torch.no_grad():
        reference = model([video])[0]
    torch.testing.assert_close(ours["pred_scores"], reference["pred_scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(ours["pred_labels"], reference["pred_labels"])
    for mine, theirs in zip(ours["pred_masks"], reference["pred_masks"]):
        # Float rounding may flip a pixel whose probability is within 1e-6 of the threshold.
        assert (_dense(mine) != _dense(theirs)).mean() < 1e-4


# Small frames, many of them: the long-video path of each method (windows, chunks, online tracking).
LONG_VIDEO_FRAMES = 120
LONG_VIDEO_SIZE = (64, 96)


@pytest.mark.parametrize("method", METHODS)
def test_long_video_through_the_inference_path(method):
    config = f"configs/{method}/synthetic_R18.yaml"
    cfg, model = _build(config)
    video = random_video(LONG_VIDEO_FRAMES, *LONG_VIDEO_SIZE, seed=2)
    with torch.no_grad():
        output = model([video])[0]
    _check_valid_output(
        cfg, output, LONG_VIDEO_FRAMES, *LONG_VIDEO_SIZE, allow_empty=method in MAY_PREDICT_NOTHING
    )
    if method not in MAY_PREDICT_NOTHING:
        # Tracks must span the video: some prediction has a mask pixel in the last frame, long after
        # the first window / chunk.
        assert any(_last_frame_has_pixels(masks) for masks in output["pred_masks"])


def _dense(track_masks) -> np.ndarray:
    """track_masks: bool [T, H, W] tensor, or a list of T RLE dicts / None -> bool array [T, H,
    W]."""
    if isinstance(track_masks, torch.Tensor):
        return track_masks.numpy()
    return np.stack(
        [
            mask_util.decode(rle).astype(bool) if rle is not None else np.zeros(REAL_SIZE, bool)
            for rle in track_masks
        ]
    )


def _last_frame_has_pixels(track_masks) -> bool:
    """track_masks: bool [T, H, W] tensor, or a list of T RLE dicts / None."""
    last = track_masks[-1]
    if isinstance(last, torch.Tensor):
        return bool(last.any())
    return last is not None and bool(mask_util.decode(last).any())
