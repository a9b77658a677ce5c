"""Tiny VisTR models and clips shared by the VisTR tests (64×96 frames, T = 3, 2 slots)."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

TINY_FRAMES = 3
TINY_SLOTS = 2
TINY_CLASSES = 3


def tiny_cfg():
    from vis_zoo.config import get_vis_cfg

    cfg = get_vis_cfg("VisTR")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    vcfg = cfg.MODEL.VISTR
    vcfg.NUM_CLASSES = TINY_CLASSES
    vcfg.ENC_LAYERS = 1
    vcfg.DEC_LAYERS = 2
    vcfg.DIM_FEEDFORWARD = 64
    vcfg.NUM_FRAMES = TINY_FRAMES
    vcfg.NUM_SLOTS = TINY_SLOTS
    cfg.MODEL.VIS.TEST_WINDOW_SIZE = TINY_FRAMES
    cfg.MODEL.VIS.TEST_WINDOW_STRIDE = 2
    cfg.MODEL.VIS.TEST_CHUNK_SIZE = 2
    return cfg


def make_video(
    num_frames, height=64, width=96, with_objects=True, absent_frame=1, seed=0, labelled=True
):
    """A clip with two tracks (class 0: a box in every frame; class 2: absent at `absent_frame`)."""
    g = torch.Generator().manual_seed(seed)
    images = [
        torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        for _ in range(num_frames)
    ]
    video = {
        "video_id": seed,
        "image": images,
        "height": height,
        "width": width,
        "length": num_frames,
        "file_names": [f"{seed}_{t}.jpg" for t in range(num_frames)],
        "frame_idx": list(range(num_frames)),
    }
    if not labelled:
        return video
    instances = []
    for t in range(num_frames):
        inst = Instances((height, width))
        num = 2 if with_objects else 0
        masks = torch.zeros((num, height, width), dtype=torch.bool)
        ids = torch.tensor([7, 8][:num])
        if with_objects:
            masks[0, 4 + t : 20 + t, 8:30] = True
            if t != absent_frame:
                masks[1, 30:50, 40:90] = True
            else:
                ids[1] = -1
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = BitMasks(masks).get_bounding_boxes()
        inst.gt_ids = ids.long()
        inst.gt_classes = torch.tensor([0, 2][:num]).long()
        instances.append(inst)
    video["instances"] = instances
    return video


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


@pytest.fixture(name="make_video")
def make_video_fixture():
    return make_video


@pytest.fixture(name="tiny_cfg")
def tiny_cfg_fixture():
    return tiny_cfg
