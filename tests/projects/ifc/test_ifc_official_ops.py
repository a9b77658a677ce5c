"""Our vectorised IFC pieces against direct restatements of the official op order."""

import torch
import torch.nn.functional as F

from vis_zoo_projects.ifc.mask_head import IFCMaskHead
from vis_zoo_projects.ifc.transformer import IFCTransformer


def test_encoder_bus_layers_attend_across_frames_of_each_video_and_slot():
    torch.manual_seed(0)
    tr = IFCTransformer(
        d_model=16,
        nhead=2,
        num_encoder_layers=2,
        num_decoder_layers=1,
        num_memory_bus=3,
        dim_feedforward=32,
        dropout=0.0,
    ).eval()
    b, t, hw, c = 2, 3, 5, 16
    src = torch.randn(hw, b * t, c)
    pos = torch.randn(hw, b * t, c)
    mask = torch.zeros(b * t, hw, dtype=torch.bool)
    mask[1, -2:] = True
    out, bus = tr.encoder(src, tr.memory_bus, tr.memory_pos, mask, pos, b)

    # reference: frame by frame, then one sequence of T tokens per (video, slot)
    m = 3
    ref_out = src.clone()
    ref_bus = tr.memory_bus[:, None].repeat(1, b * t, 1)
    for layer in range(2):
        new_out, new_bus = torch.empty_like(ref_out), torch.empty_like(ref_bus)
        for f in range(b * t):
            x = torch.cat((ref_out[:, f : f + 1], ref_bus[:, f : f + 1]))
            p = torch.cat((pos[:, f : f + 1], tr.memory_pos[:, None]))
            kpm = torch.cat((mask[f : f + 1], torch.zeros(1, m, dtype=torch.bool)), dim=1)
            y = tr.encoder.enc_layers[layer](x, src_key_padding_mask=kpm, pos=p)
            new_out[:, f], new_bus[:, f] = y[:hw, 0], y[hw:, 0]
        for v in range(b):
            for slot in range(m):
                seq = new_bus[slot, v * t : (v + 1) * t][:, None]  # [T, 1, C]
                new_bus[slot, v * t : (v + 1) * t] = tr.encoder.bus_layers[layer](seq)[:, 0]
        ref_out, ref_bus = new_out, new_bus
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(bus, ref_bus, atol=1e-5)


def test_mask_head_equals_official_grouped_conv_form():
    torch.manual_seed(0)
    head = IFCMaskHead(hidden_dim=32, res4_channels=24, res3_channels=16).eval()
    b, t, q, layers = 2, 3, 4, 2
    memory = torch.randn(b * t, 32, 3, 4)
    res4, res3 = torch.randn(b * t, 24, 5, 7), torch.randn(b * t, 16, 10, 13)
    hs = torch.randn(layers, b, q, 32)
    lat16, lat8 = head.project_laterals(res4, res3)
    ours = head(memory, lat16, lat8, hs)

    # official op order: lay1, gn1, +adapter1(res4) (nearest up), lay2, gn2, +adapter2(res3), lay3,
    # gn3, relu
    x = head.gn1(head.lay1(memory))
    cur = head.adapter1(res4)
    x = head.gn2(head.lay2(cur + F.interpolate(x, size=cur.shape[-2:], mode="nearest")))
    cur = head.adapter2(res3)
    x = F.relu(head.gn3(head.lay3(cur + F.interpolate(x, size=cur.shape[-2:], mode="nearest"))))
    x = head.out_lay(x)
    w = head.convert_to_weight(hs).permute(1, 0, 2, 3).unsqueeze(1).repeat(1, t, 1, 1, 1)
    ref = F.conv2d(
        x.view(1, b * t * 32, 10, 13), w.reshape(b * t * layers * q, 32, 1, 1), groups=b * t
    )
    ref = ref.view(b, t, layers, q, 10, 13).permute(2, 0, 3, 1, 4, 5)
    assert ours.shape == (layers, b, q, t, 10, 13)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_decoder_returns_normed_intermediates_only_when_asked():
    torch.manual_seed(0)
    tr = IFCTransformer(
        d_model=16,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=3,
        num_memory_bus=2,
        dim_feedforward=32,
        dropout=0.0,
    ).eval()
    src, pos = torch.randn(4, 16, 2, 3), torch.randn(4, 16, 2, 3)
    mask = torch.zeros(4, 2, 3, dtype=torch.bool)
    query = torch.randn(5, 16)
    hs_all, mem = tr(src, mask, query, pos, 2, True)
    hs_last, _ = tr(src, mask, query, pos, 2, False)
    assert (
        hs_all.shape == (3, 2, 5, 16)
        and hs_last.shape == (1, 2, 5, 16)
        and mem.shape == (4, 16, 2, 3)
    )
    assert torch.allclose(hs_all[-1], hs_last[0], atol=1e-6)
    # every intermediate went through the final LayerNorm
    assert torch.allclose(hs_all[0].mean(-1), torch.zeros(2, 5), atol=1e-5)
