import os

import pytest
import torch
from torch import nn

from vis_zoo.config import get_vis_cfg
from vis_zoo.engine import AtomicDetectionCheckpointer, build_optimizer, build_param_groups
from vis_zoo.engine.setup import build_config


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 1)
        self.norm = nn.LayerNorm(4)
        self.query_embed = nn.Embedding(5, 4)
        self.head = nn.Linear(4, 2)


def _groups_by_name(groups):
    return {g["name"]: g for g in groups}


def test_param_groups_apply_backbone_multiplier_and_decays():
    groups = _groups_by_name(
        build_param_groups(
            _Toy(),
            base_lr=1e-4,
            weight_decay=0.1,
            weight_decay_norm=0.2,
            weight_decay_embed=0.3,
            backbone_multiplier=0.1,
        )
    )
    assert groups["backbone.weight"]["lr"] == pytest.approx(1e-5)
    assert groups["head.weight"]["lr"] == pytest.approx(1e-4)
    assert groups["norm.weight"]["weight_decay"] == 0.2
    assert groups["query_embed.weight"]["weight_decay"] == 0.3
    assert groups["head.bias"]["weight_decay"] == 0.1
    assert len(groups) == 7  # every trainable parameter exactly once


def test_frozen_and_shared_parameters_are_skipped_or_listed_once():
    model = _Toy()
    model.backbone.weight.requires_grad_(False)
    model.head2 = model.head  # shared module
    names = [
        g["name"]
        for g in build_param_groups(
            model,
            base_lr=1.0,
            weight_decay=0,
            weight_decay_norm=0,
            weight_decay_embed=0,
            backbone_multiplier=1,
        )
    ]
    assert "backbone.weight" not in names
    assert sum(n.endswith("head.weight") or n.endswith("head2.weight") for n in names) == 1


def test_full_model_clipping_bounds_the_total_gradient_norm():
    cfg = get_vis_cfg()
    cfg.SOLVER.BASE_LR = 0.0  # lr 0: the step changes nothing, but clipping still happens first
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    model = _Toy()
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    optimizer.step()
    total = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total == pytest.approx(0.5, rel=1e-4)


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="DATASETS.DATASET_RATIO"):
        build_config("", ["DATASETS.TRAIN", "('a', 'b')", "DATASETS.DATASET_RATIO", "[1.0]"])
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED"):
        build_config("", ["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = _Toy()
    ckpt = AtomicDetectionCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_0000")
    good = (tmp_path / "model_0000.pth").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_0000")
    # The previous checkpoint is intact and no temporary file is left behind.
    assert (tmp_path / "model_0000.pth").read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"


class _Widened(nn.Module):
    """A model whose checkpoints may come from a narrower version: it widens `weight` [2] to [4]."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4))

    def adapt_checkpoint_state_dict(self, state_dict):
        if state_dict["weight"].shape == (2,):
            state_dict = dict(state_dict, weight=torch.as_tensor(state_dict["weight"]).repeat(2))
        return state_dict


def test_checkpoint_load_lets_the_model_adapt_the_state_dict(tmp_path):
    torch.save({"model": {"weight": torch.tensor([1.0, 2.0])}}, tmp_path / "narrow.pth")
    model = _Widened()
    AtomicDetectionCheckpointer(model).load(str(tmp_path / "narrow.pth"))
    assert model.weight.tolist() == [1.0, 2.0, 1.0, 2.0]
    # without the hook detectron2 drops the tensor as a shape mismatch and keeps the init
    toy = nn.Module()
    toy.weight = nn.Parameter(torch.zeros(4))
    AtomicDetectionCheckpointer(toy).load(str(tmp_path / "narrow.pth"))
    assert toy.weight.tolist() == [0.0] * 4


def test_name_lr_multipliers_stack_on_the_backbone_multiplier():
    model = _Toy()
    groups = _groups_by_name(
        build_param_groups(
            model,
            base_lr=1.0,
            weight_decay=0,
            weight_decay_norm=0,
            weight_decay_embed=0,
            backbone_multiplier=0.1,
            name_lr_multipliers=[("head", 0.5), ("backbone.bias", 0.2)],
        )
    )
    assert groups["head.weight"]["lr"] == pytest.approx(0.5)
    assert groups["backbone.bias"]["lr"] == pytest.approx(0.02)
    assert groups["backbone.weight"]["lr"] == pytest.approx(0.1)
    assert groups["norm.weight"]["lr"] == pytest.approx(1.0)


def test_seqformer_config_trains_sampling_offsets_at_a_tenth():
    import os

    from detectron2.modeling import build_model

    cfg = build_config(
        os.path.join(
            os.path.dirname(__file__), "..", "..", "configs", "seqformer", "ytvis19_R50.yaml"
        ),
        ["MODEL.DEVICE", "cpu"],
    )
    groups = build_param_groups(
        build_model(cfg),
        base_lr=1.0,
        weight_decay=0,
        weight_decay_norm=0,
        weight_decay_embed=0,
        backbone_multiplier=1.0,
        name_lr_multipliers=[(n, f) for n, f in cfg.SOLVER.LR_MULTIPLIERS],
    )
    offsets = [g["lr"] for g in groups if "sampling_offsets" in g["name"]]
    assert offsets and all(lr == pytest.approx(0.1) for lr in offsets)
    assert any(g["lr"] == pytest.approx(1.0) for g in groups if "class_embed" in g["name"])
