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


def _frame_cache(chunk_size=4):
    from vis_zoo.modeling.backbone import FrameFeatureCache

    computed = []

    def compute(ids):
        computed.extend(ids)
        x = torch.tensor(ids, dtype=torch.float32)
        # a channels-last map and a bool mask, as the methods' per-frame features are
        maps = (x[:, None, None, None] * torch.ones(len(ids), 3, 2, 5)).contiguous(
            memory_format=torch.channels_last
        )
        return {"maps": maps, "valid": (x % 2 == 0)[:, None].repeat(1, 4)}

    return FrameFeatureCache(compute, chunk_size), computed


def _check(feats, frame_ids):
    expected = torch.tensor(frame_ids, dtype=torch.float32)
    assert torch.equal(feats["maps"][:, 1, 1, 3], expected)
    assert torch.equal(feats["valid"][:, 2], expected % 2 == 0)


def test_frame_cache_hands_out_windows_as_views_of_one_window_of_memory():
    for window, stride in ((36, 18), (5, 1), (6, 4)):
        cache, computed = _frame_cache()
        storages = set()
        length = 60
        for start in range(0, length - window + 1, stride):
            ids = list(range(start, start + window))
            feats = cache.get(ids)
            _check(feats, ids)
            storages.add(feats["maps"].untyped_storage().data_ptr())
            assert len(cache) == window
            cache.release_before(start + stride)
        assert sorted(computed) == list(range(computed[-1] + 1))  # each frame computed once
        # the windows are views of one set of buffers: grown once, at the first window
        assert len(storages) == 1, (window, stride)
        assert cache._capacity() <= window + 4


def test_frame_cache_copies_repeated_or_unordered_frames_and_recomputes_released_ones():
    cache, computed = _frame_cache(chunk_size=2)
    tiled = [0, 1, 2, 0, 1, 2, 0]  # a short video tiled to a longer clip (VisTR)
    _check(cache.get(tiled), tiled)
    assert computed == [0, 1, 2]
    _check(cache.get([4, 3]), [4, 3])
    assert computed == [0, 1, 2, 3, 4]
    cache.release_before(3)
    _check(cache.get([1, 2, 3]), [1, 2, 3])  # released frames computed again
    assert computed == [0, 1, 2, 3, 4, 1, 2, 3]
    _check(cache.get([10, 11]), [10, 11])  # past a gap: a new run, frames between skipped
    assert computed[-2:] == [10, 11] and len(cache) == 2
    cache.release_before(20)
    assert len(cache) == 0
