"""The Mask2Former-VIS converter on fabricated official checkpoints (official names and shapes: the
official model's tensor layout equals ours, see test_mask2former_vis.py), directly and through
tools/convert_checkpoint.py."""

import importlib.util
import os

import pytest
import torch
from detectron2.modeling import build_model

from vis_zoo.engine.setup import build_config
from vis_zoo_projects.mask2former_vis import convert_official_state_dict

from tests.projects.mask2former_vis.test_mask2former_vis import TINY, tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def fabricate_official(reference, seed=0):
    """An official-layout state_dict with random values, queries under the pre-v2 name
    `static_query` (which the official decoder renames on load)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k.replace("predictor.query_feat", "predictor.static_query"): (
            torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
        )
        for k, v in reference.items()
    }


def test_converter_uses_every_tensor_and_names_what_is_wrong():
    model = tiny_model().eval()
    reference = model.state_dict()
    official = fabricate_official(reference)
    model.load_state_dict(convert_official_state_dict({"model": official}, reference))
    for key, value in official.items():
        assert torch.equal(model.state_dict()[key.replace("static_query", "query_feat")], value), (
            key
        )
    with pytest.raises(ValueError, match="not used: vita_module.extra"):
        convert_official_state_dict({**official, "vita_module.extra": torch.zeros(1)}, reference)
    missing = {
        k: v for k, v in official.items() if k != "sem_seg_head.pixel_decoder.mask_features.weight"
    }
    with pytest.raises(
        ValueError, match="missing: sem_seg_head.pixel_decoder.mask_features.weight"
    ):
        convert_official_state_dict(missing, reference)
    wrong = dict(official, **{"sem_seg_head.predictor.query_embed.weight": torch.zeros(9, 32)})
    with pytest.raises(
        ValueError, match="shape mismatches: sem_seg_head.predictor.query_embed.weight"
    ):
        convert_official_state_dict(wrong, reference)


def test_training_starts_from_a_coco_mask2former():
    """The official recipe initialises from a COCO instance Mask2Former: an 81-way class head that
    is an error by default and left at our initialisation with `skip_class_heads`, every other
    tensor loaded."""
    model = tiny_model()
    ours_before = {k: v.clone() for k, v in model.state_dict().items()}
    coco = fabricate_official(ours_before, seed=2)
    for name, shape in (
        ("sem_seg_head.predictor.class_embed.weight", (81, 32)),
        ("sem_seg_head.predictor.class_embed.bias", (81,)),
        ("criterion.empty_weight", (81,)),
    ):
        coco[name] = torch.rand(shape)
    with pytest.raises(ValueError, match="shape mismatches: .*class_embed"):
        convert_official_state_dict(coco, ours_before)
    converted = convert_official_state_dict(coco, ours_before, skip_class_heads=True)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert (
        sorted(missing)
        == [
            "criterion.empty_weight",
            "sem_seg_head.predictor.class_embed.bias",
            "sem_seg_head.predictor.class_embed.weight",
        ]
        and not unexpected
    )
    after = model.state_dict()
    assert torch.equal(
        after["sem_seg_head.predictor.class_embed.weight"],
        ours_before["sem_seg_head.predictor.class_embed.weight"],
    )
    assert torch.equal(
        after["sem_seg_head.pixel_decoder.mask_features.weight"],
        coco["sem_seg_head.pixel_decoder.mask_features.weight"],
    )


def test_convert_checkpoint_tool_finds_the_method(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint", os.path.join(REPO, "tools", "convert_checkpoint.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = os.path.join(REPO, "configs", "mask2former_vis", "synthetic_R18.yaml")
    model = build_model(build_config(config, TINY))
    official = fabricate_official(model.state_dict(), seed=1)
    torch.save({"model": official}, tmp_path / "official.pth")
    tool.convert(
        "mask2former_vis",
        str(tmp_path / "official.pth"),
        str(tmp_path / "ours.pth"),
        config_file=config,
        opts=TINY,
    )
    model.load_state_dict(torch.load(tmp_path / "ours.pth")["model"])
    torch.testing.assert_close(
        model.sem_seg_head.predictor.query_feat.weight,
        official["sem_seg_head.predictor.static_query.weight"],
    )
