"""Our Mask2Former-VIS against the official code on the same weights and input, stage by stage.

Needs a checkout of facebookresearch/Mask2Former: set MASK2FORMER_OFFICIAL_ROOT to it (skipped
otherwise). The official model runs in a separate process (`official_model.py`), its random R-50
weights go through our converter into our model, and both see the same 3-frame video (padded from
100 x 150 to 128 x 160, shown at 150 x 225): backbone features, the pixel decoder's outputs, the
clip decoder's class and mask logits and the final top-10 predictions must agree.
"""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model

from vis_zoo.engine.setup import build_config
from vis_zoo.modeling.backbone import normalize_and_pad
from vis_zoo_projects.mask2former_vis import convert_official_state_dict

OFFICIAL_ROOT = os.environ.get("MASK2FORMER_OFFICIAL_ROOT", "")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(OFFICIAL_ROOT, "mask2former_video")),
    reason="set MASK2FORMER_OFFICIAL_ROOT to a facebookresearch/Mask2Former checkout",
)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    out = tmp_path_factory.mktemp("official") / "official.pt"
    script = os.path.join(os.path.dirname(__file__), "official_model.py")
    subprocess.run([sys.executable, script, OFFICIAL_ROOT, str(out)], check=True)
    return torch.load(out)


@pytest.fixture(scope="module")
def ours(official):
    cfg = build_config(
        "configs/mask2former_vis/ytvis19_R50.yaml",
        ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"],
    )
    model = build_model(cfg).eval()
    model.load_state_dict(convert_official_state_dict(official["state_dict"], model.state_dict()))
    return model


def test_every_stage_equals_the_official(official, ours):
    video = official["video"]
    with torch.no_grad():
        images = normalize_and_pad(video["image"], ours.pixel_mean, ours.pixel_std, 32)
        assert tuple(images.tensor.shape[-2:]) == (128, 160)
        features = ours.backbone(images.tensor)
        for name, theirs in official["backbone"].items():
            torch.testing.assert_close(features[name], theirs, atol=1e-4, rtol=1e-4, msg=name)
        decoded = ours.sem_seg_head.pixel_decoder(features)
        inputs = official["decoder_inputs"]
        for mine, theirs in zip(decoded["multi_scale_features"], inputs["multi_scale_features"]):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            decoded["mask_features"], inputs["mask_features"], atol=1e-4, rtol=1e-4
        )
        # the clip decoder on the official decoder inputs: the official class and mask logits
        out = ours.sem_seg_head.predictor(
            [f[None] for f in inputs["multi_scale_features"]], inputs["mask_features"][None]
        )
    theirs = official["decoder_outputs"]
    torch.testing.assert_close(out["pred_logits"], theirs["pred_logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["pred_masks"], theirs["pred_masks"], atol=1e-3, rtol=1e-4)
    for mine, aux in zip(out["aux_outputs"], theirs["aux_outputs"]):
        torch.testing.assert_close(mine["pred_logits"], aux["pred_logits"], atol=1e-4, rtol=1e-4)


def test_video_output_equals_the_official(official, ours):
    """Our bounded-memory inference path (one window) gives the official top-10 predictions."""
    with torch.no_grad():
        mine = ours([official["video"]])[0]
    theirs = official["output"]
    assert mine["image_size"] == tuple(theirs["image_size"]) == (150, 225)
    order = sorted(range(len(theirs["pred_scores"])), key=lambda i: -theirs["pred_scores"][i])
    torch.testing.assert_close(
        mine["pred_scores"],
        torch.tensor([theirs["pred_scores"][i] for i in order]),
        atol=1e-5,
        rtol=1e-4,
    )
    assert mine["pred_labels"].tolist() == [theirs["pred_labels"][i] for i in order]
    from pycocotools import mask as mask_util

    for track, i in zip(mine["pred_masks"], order):
        dense = torch.stack([torch.from_numpy(mask_util.decode(rle)).bool() for rle in track])
        # float rounding may flip a pixel whose logit is within ~1e-5 of 0
        assert (dense != theirs["pred_masks"][i]).float().mean() < 1e-3
