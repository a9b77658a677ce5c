"""Test-time resize: every method's configs give the input size of its official inference code.

The official rules, written out here independently of vis_zoo:
  * VisTR (Epiphqny/VisTR inference.py) and SeqFormer (wjf5203/SeqFormer inference.py):
    torchvision `Resize(size)` on the PIL frame, no max size: short side `size`, long side
    `int(size * long / short)` (truncated).
  * IFC, VITA, MinVIS: detectron2 `ResizeShortestEdge(360, 1333)`: both sides scaled as floats,
    shrunk if the long side passes 1333, then `int(x + 0.5)`.
Frame sizes are the ones found in YouTube-VIS and OVIS.
"""

import glob
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vis_zoo.data.augmentation import (
    ShortestEdgeResize,
    apply_clip_augmentations,
    build_clip_augmentation,
    shortest_edge_output_shape,
)
from vis_zoo.data.dataset_mapper import YTVISDatasetMapper
from vis_zoo.engine.setup import build_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (height, width) of YouTube-VIS 2019/2021 and OVIS frames.
FRAME_SIZES = [(720, 1280), (480, 854), (1080, 1920), (360, 640), (406, 720), (480, 640)]


def torchvision_resize_shape(height, width, size):
    """torchvision Resize(int) on a PIL image, as the official VisTR/SeqFormer scripts call it."""
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def detectron2_resize_shape(height, width, size, max_size):
    """detectron2's ResizeShortestEdge output size (IFC, VITA and MinVIS test transform)."""
    scale = size * 1.0 / min(height, width)
    if height < width:
        new_h, new_w = size, scale * width
    else:
        new_h, new_w = scale * height, size
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


OFFICIAL_SHAPE = {
    "vistr": lambda h, w: torchvision_resize_shape(h, w, 300),
    "seqformer": lambda h, w: torchvision_resize_shape(h, w, 360),
    "ifc": lambda h, w: detectron2_resize_shape(h, w, 360, 1333),
    "vita": lambda h, w: detectron2_resize_shape(h, w, 360, 1333),
    "minvis": lambda h, w: detectron2_resize_shape(h, w, 360, 1333),
}


def _dataset_configs():
    """Every YouTube-VIS / OVIS config of every method (OVIS: VITA and MinVIS publish OVIS configs
    at
    the YouTube-VIS test size; IFC's OVIS config keeps its YouTube-VIS one)."""
    out = []
    for method in OFFICIAL_SHAPE:
        files = sorted(glob.glob(os.path.join(REPO, "configs", method, "ytvis*.yaml")))
        files += sorted(glob.glob(os.path.join(REPO, "configs", method, "ovis*.yaml")))
        assert files, f"no YouTube-VIS config for {method}"
        out += [(method, os.path.relpath(f, REPO)) for f in files]
    return out


def _config(path, extra=()):
    return build_config(os.path.join(REPO, path), ["MODEL.DEVICE", "cpu", *extra])


def _test_resize_shape(cfg, height, width):
    (aug,) = build_clip_augmentation(cfg, is_train=False)
    frames, _ = apply_clip_augmentations([aug], [np.zeros((height, width, 3), dtype=np.uint8)])
    return frames[0].shape[:2]


@pytest.mark.parametrize("method,config", _dataset_configs())
def test_config_gives_the_official_test_size(method, config):
    cfg = _config(config)
    for height, width in FRAME_SIZES:
        expected = OFFICIAL_SHAPE[method](height, width)
        assert _test_resize_shape(cfg, height, width) == expected, (config, height, width)
        # Portrait frames (rare in the datasets, but the rule is the same on the other axis).
        assert _test_resize_shape(cfg, width, height) == expected[::-1], (config, width, height)


def test_480x854_by_hand():
    """300 * 854 / 480 = 533.75 and 360 * 854 / 480 = 640.5: truncated by torchvision (VisTR,
    SeqFormer), rounded by detectron2 (IFC, VITA, MinVIS)."""
    expected = {
        "vistr": (300, 533),
        "seqformer": (360, 640),
        "ifc": (360, 641),
        "vita": (360, 641),
        "minvis": (360, 641),
    }
    for method, shape in expected.items():
        assert _test_resize_shape(_config(f"configs/{method}/ytvis19_R50.yaml"), 480, 854) == shape
        assert OFFICIAL_SHAPE[method](480, 854) == shape


def test_floor_rule_with_max_size_follows_detr():
    """With a max size the "floor" rule first lowers the short side to round(max * short / long),
    as DETR-family transforms do: 100x1000 at 300/1333 -> short 133 (not 133.3), long 1330."""
    assert shortest_edge_output_shape(100, 1000, 300, 1333, "floor") == (133, 1330)
    assert shortest_edge_output_shape(1000, 100, 300, 1333, "floor") == (1330, 133)
    # detectron2 scales both sides by 1333 / 3000 instead: 133.3 -> 133, 1333.
    assert shortest_edge_output_shape(100, 1000, 300, 1333, "round") == (133, 1333)
    assert shortest_edge_output_shape(480, 480, 300, 1333, "floor") == (300, 300)
    with pytest.raises(ValueError, match="rounding"):
        shortest_edge_output_shape(480, 854, 300, 1333, "ceil")
    with pytest.raises(ValueError, match="rounding"):
        ShortestEdgeResize(300, rounding="truncate")
    # INPUT.MIN_SIZE_TEST = 0 keeps the frame size, as in detectron2.
    frames, _ = apply_clip_augmentations(
        [ShortestEdgeResize(0, rounding="floor")], [np.zeros((48, 86, 3), dtype=np.uint8)]
    )
    assert frames[0].shape[:2] == (48, 86)


@pytest.mark.parametrize("height,width,size", [(480, 854, 300), (48, 86, 30), (406, 720, 360)])
def test_floor_resize_equals_torchvision_on_pil(height, width, size):
    """Same size and the same pixels as the official call, torchvision Resize(size) on a PIL image
    (both resample with PIL's bilinear filter on uint8), so a "floor" config sees the official
    input."""
    tv = pytest.importorskip("torchvision.transforms")
    frame = np.random.RandomState(height + width).randint(
        0, 256, (height, width, 3), dtype=np.uint8
    )
    official = np.asarray(tv.Resize(size)(Image.fromarray(frame)))
    ours, _ = apply_clip_augmentations([ShortestEdgeResize(size, rounding="floor")], [frame])
    assert ours[0].shape == official.shape
    assert np.array_equal(ours[0], official)


def test_test_mapper_gives_vistr_its_official_input(tmp_path):
    path = str(tmp_path / "00000.jpg")
    frame = np.random.RandomState(0).randint(0, 256, (480, 854, 3), dtype=np.uint8)
    Image.fromarray(frame).save(path, quality=95)
    mapper = YTVISDatasetMapper(_config("configs/vistr/ytvis19_R50.yaml"), is_train=False)
    out = mapper({"video_id": 3, "file_names": [path], "height": 480, "width": 854, "length": 1})
    assert (out["height"], out["width"]) == (480, 854)
    assert out["image"][0].shape == (3, 300, 533)


# Random-weight synthetic models with each method's YouTube-VIS test resize; the overrides make
# every model emit masks (VisTR drops tracks whose masks are empty) and keep the outputs small.
_MODEL_OVERRIDES = {
    "vistr": ["MODEL.VISTR.MASK_THRESHOLD", "1e-6"],
    "ifc": ["MODEL.IFC.MULTI_CLS_ON", "False"],
    "seqformer": [],
    "vita": [],
    "minvis": [],
}


@pytest.mark.parametrize("method", sorted(_MODEL_OVERRIDES))
def test_predicted_masks_at_the_original_frame_size(method, tmp_path):
    from detectron2.modeling import build_model

    ytvis = _config(f"configs/{method}/ytvis19_R50.yaml")
    cfg = _config(
        f"configs/{method}/synthetic_R18.yaml",
        [
            "MODEL.WEIGHTS",
            "",
            "INPUT.MIN_SIZE_TEST",
            str(ytvis.INPUT.MIN_SIZE_TEST),
            "INPUT.MAX_SIZE_TEST",
            str(ytvis.INPUT.MAX_SIZE_TEST),
            "INPUT.TEST_RESIZE_ROUNDING",
            ytvis.INPUT.TEST_RESIZE_ROUNDING,
            *_MODEL_OVERRIDES[method],
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    for i, (height, width) in enumerate(FRAME_SIZES):
        path = str(tmp_path / f"{i}.jpg")
        frame = np.random.RandomState(i).randint(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(frame).save(path, quality=90)
        video = mapper(
            {"video_id": i, "file_names": [path], "height": height, "width": width, "length": 1}
        )
        assert tuple(video["image"][0].shape[1:]) == OFFICIAL_SHAPE[method](height, width)
        with torch.no_grad():
            out = model([video])[0]
        assert out["image_size"] == (height, width)
        assert len(out["pred_masks"]) > 0, (method, height, width)
        for masks in out["pred_masks"]:
            assert masks.dtype == torch.bool and tuple(masks.shape) == (1, height, width)
