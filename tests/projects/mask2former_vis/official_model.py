"""Run the OFFICIAL Mask2Former-VIS model on CPU and save what it computes, stage by stage.

    python tests/projects/mask2former_vis/official_model.py OFFICIAL_ROOT OUT.pt

OFFICIAL_ROOT is a checkout of facebookresearch/Mask2Former (its `mask2former` and
`mask2former_video` packages). The model is built from its
`configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml` with random weights (seed 0; the
mask embedding's last layer redrawn wider, see `main`) and run on a fixed 3-frame video; OUT.pt
holds the state_dict, the input and, per stage, the backbone features, the decoder's inputs and
outputs and the final video output. It runs in its own process because the official package
registers the same meta-architecture name as ours (`VideoMaskFormer`). Two imports the R-50 model
does not use are stubbed: the compiled deformable attention op (the official module falls back to
its pure-PyTorch `ms_deform_attn_core_pytorch` when the op fails) and `timm` (the Swin backbone's).
"""

import sys
import types

import torch


def official_video(num_frames: int = 3, height: int = 100, width: int = 150) -> dict:
    """uint8 frames whose padded size (128 x 160) differs from the frame size, shown at
    150 x 225."""
    g = torch.Generator().manual_seed(7)
    frames = [
        torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        for _ in range(num_frames)
    ]
    return {"image": frames, "height": 150, "width": 225, "video_id": 0, "length": num_frames}


def _stub_unused_imports() -> None:
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = torch.nn.Identity
    layers.to_2tuple = lambda x: (x, x)
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    timm = types.ModuleType("timm")
    timm.models = types.ModuleType("timm.models")
    timm.models.layers = layers
    sys.modules.update({"timm": timm, "timm.models": timm.models, "timm.models.layers": layers})


def main(official_root: str, out_path: str) -> None:
    _stub_unused_imports()
    sys.path.insert(0, official_root)
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.projects.deeplab import add_deeplab_config
    from mask2former import add_maskformer2_config
    from mask2former_video import add_maskformer2_video_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_maskformer2_video_config(cfg)
    cfg.merge_from_file(
        f"{official_root}/configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"
    )
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # At initialisation nearly every mask logit is positive, so the masks (and the masked
    # attention) would be all-foreground; a wider mask embedding gives masks of both signs.
    last = model.sem_seg_head.predictor.mask_embed.layers[-1]
    torch.nn.init.normal_(last.weight, std=0.3)
    torch.nn.init.zeros_(last.bias)
    saved = {"state_dict": model.state_dict(), "video": official_video()}

    backbone_forward = model.backbone.forward
    predictor_forward = model.sem_seg_head.predictor.forward

    def record_backbone(x):
        saved["backbone"] = backbone_forward(x)
        return saved["backbone"]

    def record_predictor(x, mask_features, mask=None):
        saved["decoder_inputs"] = {"multi_scale_features": list(x), "mask_features": mask_features}
        saved["decoder_outputs"] = predictor_forward(x, mask_features, mask)
        return saved["decoder_outputs"]

    model.backbone.forward = record_backbone
    model.sem_seg_head.predictor.forward = record_predictor
    with torch.no_grad():
        saved["output"] = model([saved["video"]])
    torch.save(saved, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
