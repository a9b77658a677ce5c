import torch
from detectron2.modeling import build_model

from tests.projects.ifc.ifc_helpers import ifc_cfg


def _count(depth):
    torch.manual_seed(0)
    model = build_model(ifc_cfg(depth))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, total, trainable


def test_r50_parameter_count_matches_official():
    model, total, trainable = _count(50)
    assert total == 39_148_009
    assert trainable == 38_925_609  # stem and res2 frozen (FREEZE_AT = 2)
    assert sum(p.numel() for p in model.backbone.parameters()) == 23_454_912
    assert sum(p.numel() for p in model.transformer.parameters()) == 12_631_296
    assert sum(p.numel() for p in model.mask_head.parameters()) == 2_435_328
    assert len(model.state_dict()) == 429


def test_r101_parameter_count_matches_official():
    _, total, _ = _count(101)
    assert total == 58_087_913
