"""The official-checkpoint converter on a fabricated state_dict with the official names and
shapes."""

import pytest
import torch
from detectron2.modeling import build_model

from vis_zoo.engine.setup import build_config
from vis_zoo_projects.vita.convert import convert_official_state_dict

# representative names and shapes of the official checkpoint (sukjunhwang/VITA @ 59c24ad)
OFFICIAL_SHAPES = {
    "backbone.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.stem.conv1.norm.running_var": (64,),
    "backbone.res5.2.conv3.weight": (2048, 512, 1, 1),
    "sem_seg_head.pixel_decoder.input_proj.0.0.weight": (256, 2048, 1, 1),
    "sem_seg_head.pixel_decoder.input_proj.2.1.bias": (256,),
    "sem_seg_head.pixel_decoder.transformer.level_embed": (3, 256),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight": (
        192,
        256,
    ),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.attention_weights.weight": (
        96,
        256,
    ),
    "sem_seg_head.pixel_decoder.transformer.encoder.layers.3.linear1.weight": (1024, 256),
    "sem_seg_head.pixel_decoder.mask_features.weight": (256, 256, 1, 1),
    "sem_seg_head.pixel_decoder.adapter_1.norm.weight": (256,),
    "sem_seg_head.pixel_decoder.layer_1.weight": (256, 256, 3, 3),
    "sem_seg_head.predictor.transformer_cross_attention_layers.8.multihead_attn.in_proj_weight": (
        768,
        256,
    ),
    "sem_seg_head.predictor.transformer_ffn_layers.0.linear1.weight": (2048, 256),
    "sem_seg_head.predictor.query_embed.weight": (100, 256),
    "sem_seg_head.predictor.level_embed.weight": (3, 256),
    "sem_seg_head.predictor.class_embed.weight": (41, 256),
    "sem_seg_head.predictor.mask_embed.layers.2.weight": (256, 256),
    "criterion.empty_weight": (41,),
    "vita_criterion.empty_weight": (41,),
    "vita_module.enc_self_attn.5.self_attn.in_proj_weight": (768, 256),
    "vita_module.enc_ffn.5.linear2.weight": (256, 2048),
    "vita_module.transformer_cross_attention_layers.2.multihead_attn.out_proj.weight": (256, 256),
    "vita_module.vita_mask_features.weight": (256, 256, 1, 1),
    "vita_module.fq_pos.weight": (100, 256),
    "vita_module.input_proj_dec.weight": (256, 256),
    "vita_module.class_embed.weight": (41, 256),
    "vita_module.mask_embed.layers.0.weight": (256, 256),
    "vita_module.sim_embed_frame.weight": (256, 256),
    "vita_module.sim_embed_clip.bias": (256,),
}


@pytest.fixture(scope="module")
def r50_model():
    cfg = build_config("configs/vita/ytvis19_R50.yaml", ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def fabricate_official(reference, seed=0):
    """An official-layout state_dict: our names, the pre-v2 `static_query`, random values."""
    g = torch.Generator().manual_seed(seed)
    official = {}
    for name, tensor in reference.items():
        key = name.replace("predictor.query_feat", "predictor.static_query")
        official[key] = (
            torch.randn(tensor.shape, generator=g) if tensor.is_floating_point() else tensor.clone()
        )
    return official


def test_official_layout_matches_our_model(r50_model):
    reference = r50_model.state_dict()
    assert len(reference) == 706
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(reference[key].shape) == shape, key


def test_convert_loads_every_tensor_unchanged(r50_model):
    reference = r50_model.state_dict()
    official = fabricate_official(reference)
    converted = convert_official_state_dict({"model": official}, reference)
    assert len(converted) == 706
    assert torch.equal(
        converted["sem_seg_head.predictor.query_feat.weight"],
        official["sem_seg_head.predictor.static_query.weight"],
    )
    r50_model.load_state_dict(converted, strict=True)
    for key, value in official.items():
        ours = key.replace("static_query", "query_feat")
        assert torch.equal(r50_model.state_dict()[ours], value), key


def test_convert_fails_clearly(r50_model):
    reference = r50_model.state_dict()
    official = fabricate_official(reference)
    extra = dict(official, **{"sem_seg_head.predictor.extra_head.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="not used: sem_seg_head.predictor.extra_head.weight"):
        convert_official_state_dict(extra, reference)
    missing = {k: v for k, v in official.items() if k != "vita_module.fq_pos.weight"}
    with pytest.raises(ValueError, match="missing: vita_module.fq_pos.weight"):
        convert_official_state_dict(missing, reference)
    wrong = dict(official)
    wrong["vita_module.input_proj_dec.weight"] = torch.zeros(128, 256)
    with pytest.raises(ValueError, match=r"shape mismatches: vita_module.input_proj_dec.weight"):
        convert_official_state_dict(wrong, reference)
    foreign = dict(official, **{"module.detr.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="module.detr.x"):
        convert_official_state_dict(foreign, reference)


def test_coco_class_head_is_skipped_only_when_asked(r50_model):
    reference = r50_model.state_dict()
    official = fabricate_official(reference)
    for key in ("sem_seg_head.predictor.class_embed.weight", "vita_module.class_embed.weight"):
        official[key] = torch.zeros(81, 256)
    for key in (
        "sem_seg_head.predictor.class_embed.bias",
        "vita_module.class_embed.bias",
        "criterion.empty_weight",
        "vita_criterion.empty_weight",
    ):
        official[key] = torch.zeros(81)
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_official_state_dict(official, reference)
    converted = convert_official_state_dict(official, reference, skip_class_heads=True)
    assert len(converted) == 706 - 6 and "vita_module.class_embed.weight" not in converted
