import math

import torch

from vis_zoo.modeling import PositionEmbeddingSine2D


def test_sine_encoding_detr_values_and_padding():
    pe = PositionEmbeddingSine2D(num_pos_feats=4, normalize=True)
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[1, :, 3:] = True  # second image: only 3 valid columns
    pos = pe(mask)
    assert pos.shape == (2, 8, 3, 5)
    # DETR form: y at row r is (r+1)/(H + eps)*2pi, channel 0 = sin(y / 1), channel 1 = cos(y / 1)
    y = 2 / (3 + 1e-6) * 2 * math.pi
    assert torch.allclose(pos[0, 0, 1, 0], torch.tensor(math.sin(y)), atol=1e-6)
    assert torch.allclose(pos[0, 1, 1, 0], torch.tensor(math.cos(y)), atol=1e-6)
    # channel 2 uses frequency 10000^(2*1/4) = 100
    assert torch.allclose(pos[0, 2, 1, 0], torch.tensor(math.sin(y / 100)), atol=1e-6)
    # x normalisation uses the valid width: last valid column of image 1 reaches 2pi
    x_last = 3 / (3 + 1e-6) * 2 * math.pi
    assert torch.allclose(pos[1, 4, 0, 2], torch.tensor(math.sin(x_last)), atol=1e-5)
    assert not torch.allclose(pos[0, 4, 0, 2], pos[1, 4, 0, 2])


def test_sine_encoding_offset_variant():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    detr = PositionEmbeddingSine2D(num_pos_feats=2)(mask)
    deform = PositionEmbeddingSine2D(num_pos_feats=2, offset=-0.5)(mask)
    y = (1 - 0.5) / (4 + 1e-6) * 2 * math.pi
    assert torch.allclose(deform[0, 0, 0, 0], torch.tensor(math.sin(y)), atol=1e-6)
    assert not torch.allclose(detr, deform)
