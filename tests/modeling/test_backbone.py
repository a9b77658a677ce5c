import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

from vis_zoo.modeling import (
    FoldedBackboneCache,
    backbone_with_masks,
    fold_frozen_batchnorm,
    normalize_and_pad,
    padding_mask,
)


def _r18():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():  # non-trivial frozen statistics
        for name, buf in backbone.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return backbone


def test_padding_masks_and_normalisation():
    frames = [
        torch.full((3, 40, 70), 10, dtype=torch.uint8),
        torch.full((3, 64, 50), 10, dtype=torch.uint8),
    ]
    mean, std = (
        torch.tensor([10.0, 0.0, 0.0]).view(3, 1, 1),
        torch.tensor([1.0, 2.0, 5.0]).view(3, 1, 1),
    )
    images = normalize_and_pad(frames, mean, std)
    assert images.tensor.shape == (2, 3, 64, 70)
    assert images.tensor[0, 0, :40, :70].abs().max() == 0 and torch.allclose(
        images.tensor[0, 1, 0, 0], torch.tensor(5.0)
    )
    assert images.tensor[0, :, 40:].abs().max() == 0  # padding is zero after normalisation
    mask = padding_mask(images.image_sizes, (8, 9), 8, torch.device("cpu"))
    assert (
        mask[0, :5, :9].logical_not().all() and mask[0, 5:].all()
    )  # ceil(40/8)=5 rows, ceil(70/8)=9 cols
    assert mask[1, :8, :7].logical_not().all() and mask[1, :, 7:].all()  # ceil(50/8)=7 cols


def test_backbone_with_masks_levels():
    backbone = _r18()
    images = normalize_and_pad(
        [torch.zeros(3, 64, 96), torch.zeros(3, 40, 96)], torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    )
    feats, masks = backbone_with_masks(backbone, images)
    assert set(feats) == set(masks) == {"res3", "res4", "res5"}
    assert masks["res5"].shape == feats["res5"].shape[:1] + feats["res5"].shape[2:]
    assert masks["res3"][1, 5:].all() and not masks["res3"][1, :5].any()


def test_folded_frozen_bn_is_the_same_function_and_cache_follows_weights():
    backbone = _r18()
    x = torch.randn(2, 3, 64, 96)
    folded = fold_frozen_batchnorm(backbone)
    with torch.no_grad():
        ref, out = backbone(x), folded(x)
    for k in ref:
        assert torch.allclose(ref[k], out[k], atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in folded.parameters())
    assert backbone.stem.conv1.norm is not None  # original untouched

    cache = FoldedBackboneCache()
    first = cache.get(backbone)
    assert cache.get(backbone) is first
    with torch.no_grad():
        backbone.res5[0].conv1.weight.mul_(2.0)  # e.g. an optimizer step or a loaded checkpoint
    second = cache.get(backbone)
    assert second is not first
    with torch.no_grad():
        assert torch.allclose(second(x)["res5"], backbone(x)["res5"], atol=1e-4, rtol=1e-4)
