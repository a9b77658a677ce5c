"""The IFC converter on a state_dict fabricated with the official names and shapes (the official
checkpoint layout)."""

import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _official_ifc_r50_names_and_shapes(num_classes=40):
    """Every tensor of the official IFC R-50 checkpoint, written from the official module layout."""
    shapes = OrderedDict()

    def conv(prefix, out_c, in_c, k):
        shapes[f"{prefix}.weight"] = (out_c, in_c, k, k)
        for n in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.norm.{n}"] = (out_c,)

    bb = "detr.backbone.0.backbone."
    conv(bb + "stem.conv1", 64, 3, 7)
    in_c = 64
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        bott, out_c = 64 * 2 ** (stage - 2), 256 * 2 ** (stage - 2)
        for k in range(blocks):
            p = f"{bb}res{stage}.{k}"
            if k == 0:
                conv(f"{p}.shortcut", out_c, in_c, 1)
            conv(f"{p}.conv1", bott, in_c if k == 0 else out_c, 1)
            conv(f"{p}.conv2", bott, bott, 3)
            conv(f"{p}.conv3", out_c, bott, 1)
        in_c = out_c
    shapes["detr.input_proj.weight"] = (256, 2048, 1, 1)
    shapes["detr.input_proj.bias"] = (256,)
    shapes["detr.transformer.memory_bus"] = (8, 256)
    shapes["detr.transformer.memory_pos"] = (8, 256)

    def attn(p):
        shapes[f"{p}.in_proj_weight"] = (768, 256)
        shapes[f"{p}.in_proj_bias"] = (768,)
        shapes[f"{p}.out_proj.weight"] = (256, 256)
        shapes[f"{p}.out_proj.bias"] = (256,)

    def ffn_norms(p, num_norms):
        shapes[f"{p}.linear1.weight"] = (2048, 256)
        shapes[f"{p}.linear1.bias"] = (2048,)
        shapes[f"{p}.linear2.weight"] = (256, 2048)
        shapes[f"{p}.linear2.bias"] = (256,)
        for i in range(1, num_norms + 1):
            shapes[f"{p}.norm{i}.weight"] = (256,)
            shapes[f"{p}.norm{i}.bias"] = (256,)

    for kind in ("enc_layers", "bus_layers"):
        for i in range(3):
            p = f"detr.transformer.encoder.{kind}.{i}"
            attn(f"{p}.self_attn")
            ffn_norms(p, 2)
    for i in range(3):
        p = f"detr.transformer.clip_decoder.layers.{i}"
        attn(f"{p}.self_attn")
        attn(f"{p}.multihead_attn")
        ffn_norms(p, 3)
    shapes["detr.transformer.clip_decoder.norm.weight"] = (256,)
    shapes["detr.transformer.clip_decoder.norm.bias"] = (256,)
    shapes["detr.class_embed.layers.0.weight"] = (256, 256)
    shapes["detr.class_embed.layers.0.bias"] = (256,)
    shapes["detr.class_embed.layers.1.weight"] = (num_classes + 1, 256)
    shapes["detr.class_embed.layers.1.bias"] = (num_classes + 1,)
    shapes["detr.query_embed.weight"] = (100, 256)
    mh = "detr.mask_head."
    for i in (1, 2, 3):
        shapes[f"{mh}lay{i}.weight"] = (256, 256, 3, 3)
        shapes[f"{mh}lay{i}.bias"] = (256,)
        shapes[f"{mh}gn{i}.weight"] = (256,)
        shapes[f"{mh}gn{i}.bias"] = (256,)
    shapes[mh + "out_lay.depthwise.weight"] = (256, 1, 5, 5)
    shapes[mh + "out_lay.depthwise.bias"] = (256,)
    shapes[mh + "out_lay.pointwise.weight"] = (256, 256, 1, 1)
    shapes[mh + "out_lay.pointwise.bias"] = (256,)
    shapes[mh + "adapter1.weight"] = (256, 1024, 1, 1)
    shapes[mh + "adapter1.bias"] = (256,)
    shapes[mh + "adapter2.weight"] = (256, 512, 1, 1)
    shapes[mh + "adapter2.bias"] = (256,)
    for i in range(3):
        shapes[f"{mh}convert_to_weight.layers.{i}.weight"] = (256, 256)
        shapes[f"{mh}convert_to_weight.layers.{i}.bias"] = (256,)
    shapes["criterion.empty_weight"] = (num_classes + 1,)
    return shapes


@pytest.fixture(scope="module")
def official_and_model():
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    shapes = _official_ifc_r50_names_and_shapes()
    assert len(shapes) == 429
    g = torch.Generator().manual_seed(0)
    official = OrderedDict((k, torch.randn(s, generator=g)) for k, s in shapes.items())
    for k in official:
        if k.endswith("running_var"):
            official[k] = official[k].abs() + 0.5
    cfg = build_config(os.path.join(REPO, "configs/ifc/ytvis19_R50.yaml"), ["MODEL.DEVICE", "cpu"])
    return official, build_model(cfg)


def test_every_official_tensor_lands_in_our_model(official_and_model):
    from vis_zoo_projects.ifc import convert_official_state_dict

    official, model = official_and_model
    converted = convert_official_state_dict({"model": official}, model.state_dict())
    assert len(converted) == 429 == len(model.state_dict())
    model.load_state_dict(converted, strict=True)
    sd = model.state_dict()
    assert torch.equal(
        sd["backbone.res4.5.conv3.norm.running_var"],
        official["detr.backbone.0.backbone.res4.5.conv3.norm.running_var"],
    )
    assert torch.equal(
        sd["transformer.decoder.layers.2.multihead_attn.in_proj_weight"],
        official["detr.transformer.clip_decoder.layers.2.multihead_attn.in_proj_weight"],
    )
    assert torch.equal(
        sd["transformer.encoder.bus_layers.1.linear2.weight"],
        official["detr.transformer.encoder.bus_layers.1.linear2.weight"],
    )
    assert torch.equal(
        sd["mask_head.out_lay.depthwise.weight"],
        official["detr.mask_head.out_lay.depthwise.weight"],
    )


def test_conversion_errors_name_the_keys(official_and_model):
    from vis_zoo_projects.ifc import convert_official_state_dict

    official, model = official_and_model
    reference = model.state_dict()
    extra = OrderedDict(official)
    extra["detr.backbone.1.something"] = torch.zeros(3)
    with pytest.raises(
        ValueError, match=r"1 official tensors not used: detr\.backbone\.1\.something"
    ):
        convert_official_state_dict(extra, reference)
    missing = OrderedDict(official)
    del missing["detr.query_embed.weight"]
    with pytest.raises(ValueError, match=r"1 of our tensors missing: query_embed\.weight"):
        convert_official_state_dict(missing, reference)
    wrong = OrderedDict(official)
    wrong["detr.class_embed.layers.1.weight"] = torch.zeros(81, 256)  # COCO head
    with pytest.raises(ValueError, match=r"shape mismatches: detr\.class_embed\.layers\.1\.weight"):
        convert_official_state_dict(wrong, reference)


def test_cli_writes_a_detectron2_checkpoint(official_and_model, tmp_path):
    official, model = official_and_model
    src, dst = tmp_path / "official.pth", tmp_path / "ours.pth"
    torch.save({"model": official, "iteration": 6000}, src)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools/convert_checkpoint.py"),
            "--method",
            "ifc",
            str(src),
            str(dst),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    from detectron2.checkpoint import DetectionCheckpointer

    DetectionCheckpointer(model).load(str(dst))
    assert torch.equal(
        model.state_dict()["query_embed.weight"], official["detr.query_embed.weight"]
    )

    bad = tmp_path / "bad.pth"
    torch.save({"model": {"detr.unknown.weight": torch.zeros(1)}}, bad)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools/convert_checkpoint.py"),
            "--method",
            "ifc",
            str(bad),
            str(tmp_path / "x.pth"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert (
        proc.returncode == 1
        and "detr.unknown.weight" in proc.stderr
        and not (tmp_path / "x.pth").exists()
    )
