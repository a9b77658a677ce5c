"""Official VisTR checkpoint conversion, on state_dicts fabricated with the official
names/shapes."""

import pytest
import torch
import torchvision
from detectron2.modeling import build_model
from torchvision.ops.misc import FrozenBatchNorm2d

from vis_zoo_projects.vistr.convert import convert_official_state_dict


def fabricate_official_state_dict(
    resnet: torch.nn.Module,
    *,
    hidden=384,
    ffn=2048,
    enc=6,
    dec=6,
    queries=360,
    logits=42,
    fpn=(1024, 512, 256),
    c5=2048,
    seed=0,
):
    """Names and shapes of the official checkpoint (Epiphqny/VisTR @ 445c9e4), random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in resnet.state_dict().items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        sd["vistr.backbone.0.body." + k] = (
            torch.randn(v.shape, generator=g) * 0.1 if v.dtype.is_floating_point else v
        )
        if k.endswith("running_var"):
            sd["vistr.backbone.0.body." + k] = torch.rand(v.shape, generator=g) + 0.5

    def add(name, *shape):
        sd[name] = torch.randn(shape, generator=g) * 0.05

    add("vistr.input_proj.weight", hidden, c5, 1, 1)
    add("vistr.input_proj.bias", hidden)
    for kind, n in (("encoder", enc), ("decoder", dec)):
        for i in range(n):
            p = f"vistr.transformer.{kind}.layers.{i}."
            attns = ["self_attn"] + (["multihead_attn"] if kind == "decoder" else [])
            for a in attns:
                add(p + a + ".in_proj_weight", 3 * hidden, hidden)
                add(p + a + ".in_proj_bias", 3 * hidden)
                add(p + a + ".out_proj.weight", hidden, hidden)
                add(p + a + ".out_proj.bias", hidden)
            add(p + "linear1.weight", ffn, hidden)
            add(p + "linear1.bias", ffn)
            add(p + "linear2.weight", hidden, ffn)
            add(p + "linear2.bias", hidden)
            for norm in ["norm1", "norm2"] + (["norm3"] if kind == "decoder" else []):
                add(p + norm + ".weight", hidden)
                add(p + norm + ".bias", hidden)
    add("vistr.transformer.decoder.norm.weight", hidden)
    add("vistr.transformer.decoder.norm.bias", hidden)
    add("vistr.class_embed.weight", logits, hidden)
    add("vistr.class_embed.bias", logits)
    for i, out in enumerate((hidden, hidden, 4)):
        add(f"vistr.bbox_embed.layers.{i}.weight", out, hidden)
        add(f"vistr.bbox_embed.layers.{i}.bias", out)
    add("vistr.query_embed.weight", queries, hidden)
    for lin in ("q_linear", "k_linear"):
        add(f"bbox_attention.{lin}.weight", hidden, hidden)
        add(f"bbox_attention.{lin}.bias", hidden)
    dim = hidden + 8
    chans = [(dim, dim), (hidden // 2, dim), (hidden // 4, hidden // 2), (hidden // 8, hidden // 4)]
    for i, (o, c) in enumerate(chans, start=1):
        add(f"mask_head.lay{i}.weight", o, c, 3, 3)
        add(f"mask_head.lay{i}.bias", o)
        add(f"mask_head.gn{i}.weight", o)
        add(f"mask_head.gn{i}.bias", o)
    add("mask_head.gn5.weight", hidden // 16)
    add("mask_head.gn5.bias", hidden // 16)
    add("mask_head.conv_offset.weight", 18, hidden // 8, 1, 1)
    add("mask_head.conv_offset.bias", 18)
    add("mask_head.dcn.weight", hidden // 16, hidden // 8, 3, 3)
    for i, (o, c) in enumerate(zip((hidden // 2, hidden // 4, hidden // 8), fpn), start=1):
        add(f"mask_head.adapter{i}.weight", o, c, 1, 1)
        add(f"mask_head.adapter{i}.bias", o)
    for i, (o, c, k) in zip((0, 3, 6, 9), ((12, 24, 3), (12, 12, 3), (12, 12, 3), (1, 12, 1))):
        add(f"insmask_head.{i}.weight", o, c, k, k, k)
        add(f"insmask_head.{i}.bias", o)
    for i in (1, 4, 7):
        add(f"insmask_head.{i}.weight", 12)
        add(f"insmask_head.{i}.bias", 12)
    return sd


def _r50_cfg():
    from vis_zoo.config import get_vis_cfg

    cfg = get_vis_cfg("VisTR")
    cfg.merge_from_file("configs/vistr/ytvis19_R50.yaml")
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_r50_checkpoint_converts_with_every_tensor_used():
    official = fabricate_official_state_dict(torchvision.models.resnet50(weights=None))
    assert len(official) == 503  # the official R-50 checkpoint's tensor count
    model = build_model(_r50_cfg())
    converted = convert_official_state_dict({"model": official}, model.state_dict())
    assert len(converted) == 503
    model.load_state_dict(converted, strict=True)
    assert torch.equal(
        model.backbone.res5[2].conv3.norm.running_var,
        official["vistr.backbone.0.body.layer4.2.bn3.running_var"],
    )
    assert torch.equal(
        model.backbone.res2[0].shortcut.weight,
        official["vistr.backbone.0.body.layer1.0.downsample.0.weight"],
    )
    assert torch.equal(
        model.transformer.decoder.layers[5].multihead_attn.in_proj_weight,
        official["vistr.transformer.decoder.layers.5.multihead_attn.in_proj_weight"],
    )
    assert torch.equal(model.mask_head.dcn.weight, official["mask_head.dcn.weight"])


def test_conversion_fails_clearly(tiny_cfg):
    official = fabricate_official_state_dict(torchvision.models.resnet50(weights=None))
    target = build_model(_r50_cfg()).state_dict()
    broken = dict(official)
    del broken["mask_head.gn3.bias"]
    with pytest.raises(ValueError, match="mask_head.gn3.bias"):
        convert_official_state_dict(broken, target)
    broken = dict(official, **{"vistr.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="vistr.extra.weight"):
        convert_official_state_dict(broken, target)
    broken = dict(official, **{"vistr.query_embed.weight": torch.zeros(180, 384)})
    with pytest.raises(ValueError, match="query_embed.weight.*180"):
        convert_official_state_dict(broken, target)


def test_converted_backbone_matches_torchvision_resnet(tiny_cfg):
    """The official backbone is torchvision's ResNet with FrozenBN; after conversion our detectron2
    ResNet must compute the same C2..C5 (checks the key map, STRIDE_IN_1X1 and the stem)."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    cfg = tiny_cfg()
    official = fabricate_official_state_dict(
        resnet, ffn=64, enc=1, dec=2, queries=6, logits=5, fpn=(256, 128, 64), c5=512
    )
    resnet.load_state_dict(
        {
            k[len("vistr.backbone.0.body.") :]: v
            for k, v in official.items()
            if k.startswith("vistr.backbone.0.body.")
        },
        strict=False,
    )
    model = build_model(cfg).eval()
    model.load_state_dict(convert_official_state_dict(official, model.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = model.backbone(x)
        y = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        for name, layer in zip(
            ("res2", "res3", "res4", "res5"),
            (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4),
        ):
            y = layer(y)
            torch.testing.assert_close(ours[name], y, atol=1e-4, rtol=1e-4)
