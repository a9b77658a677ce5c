"""Tiny IFC models and clips shared by the IFC tests (R18, hidden 32, 64x96 frames, T <= 3)."""

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

TINY_CLASSES = 3


def ifc_cfg(depth=18):
    from vis_zoo.config import get_vis_cfg

    cfg = get_vis_cfg("IFC")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    return cfg


def tiny_cfg():
    cfg = ifc_cfg(18)
    c = cfg.MODEL.IFC
    c.NUM_CLASSES = TINY_CLASSES
    c.HIDDEN_DIM = 32
    c.NHEADS = 4
    c.DIM_FEEDFORWARD = 64
    c.NUM_OBJECT_QUERIES = 6
    c.NUM_MEMORY_BUS = 2
    c.ENC_LAYERS = 2
    c.DEC_LAYERS = 2
    return cfg


def tiny_model(seed=0, **vis):
    cfg = tiny_cfg()
    for k, v in vis.items():
        setattr(cfg.MODEL.VIS, k, v)
    torch.manual_seed(seed)
    return build_model(cfg)


def make_video(
    num_frames=3, height=64, width=96, seed=0, absent=((1, 1),), with_instances=True, out_size=None
):
    """A clip with two tracks (classes 0 and 2); `absent` lists (track, frame) where a track is
    missing."""
    g = torch.Generator().manual_seed(seed)
    video = {
        "video_id": seed,
        "length": num_frames,
        "frame_idx": list(range(num_frames)),
        "file_names": [f"frame{t}.jpg" for t in range(num_frames)],
        "height": out_size[0] if out_size else height,
        "width": out_size[1] if out_size else width,
        "image": [
            torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
            for _ in range(num_frames)
        ],
    }
    if with_instances:
        frames = []
        for t in range(num_frames):
            inst = Instances((height, width))
            masks = torch.zeros(2, height, width, dtype=torch.bool)
            masks[0, 8:30, 10 + 2 * t : 40 + 2 * t] = True
            masks[1, 30:60, 50 : 90 - t] = True
            ids = torch.tensor([0, 1])
            for track, frame in absent:
                if frame == t:
                    masks[track] = False
                    ids[track] = -1
            inst.gt_ids = ids
            inst.gt_classes = torch.tensor([0, 2])
            inst.gt_masks = BitMasks(masks)
            inst.gt_boxes = Boxes(torch.zeros(2, 4))
            frames.append(inst)
        video["instances"] = frames
    return video


def detecting(model):
    """Random heads often pick no-object for every query; lower its logit so that queries are
    kept."""
    with torch.no_grad():
        model.class_embed.layers[-1].bias[-1] -= 5.0
    return model
