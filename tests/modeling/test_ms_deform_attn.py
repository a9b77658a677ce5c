"""Multi-scale deformable attention: the grid_sample core against a loop-based reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from vis_zoo.modeling.ms_deform_attn import (
    MSDeformAttn,
    level_start_index_from_shapes,
    ms_deform_attn_core,
    ms_deform_attn_core_reference,
)

# odd sizes, one 1x1 level, levels of different aspect ratios
SHAPES = [(7, 5), (3, 4), (1, 1)]


def _inputs(n=2, lq=4, heads=2, dim=3, points=2, shapes=SHAPES, seed=0, margin=0.3):
    """Random value/locations/weights; locations spill `margin` outside [0, 1] to test zero
    padding."""
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, heads, dim, generator=g, dtype=torch.float64)
    loc = torch.rand(n, lq, heads, len(shapes), points, 2, generator=g, dtype=torch.float64)
    loc = loc * (1 + 2 * margin) - margin
    weights = torch.rand(n, lq, heads, len(shapes), points, generator=g, dtype=torch.float64)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, loc, weights


@pytest.mark.parametrize("recompute", [True, False])
def test_core_matches_reference_values(recompute):
    value, loc, weights = _inputs()
    out = ms_deform_attn_core(value, SHAPES, loc, weights, recompute_backward=recompute)
    ref = ms_deform_attn_core_reference(value, SHAPES, loc, weights)
    assert out.shape == (2, 4, 2 * 3)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("n", [1, 2])
def test_core_matches_reference_gradients(recompute, n):
    value, loc, weights = _inputs(n=n, seed=1)
    # keep locations away from pixel-centre lines, where bilinear is not differentiable
    for t in (value, loc, weights):
        t.requires_grad_(True)
    grad_out = torch.randn(n, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = ms_deform_attn_core(value, SHAPES, loc, weights, recompute_backward=recompute)
    grads = torch.autograd.grad(out, (value, loc, weights), grad_out)
    ref = ms_deform_attn_core_reference(value, SHAPES, loc, weights)
    ref_grads = torch.autograd.grad(ref, (value, loc, weights), grad_out)
    for g, rg, name in zip(grads, ref_grads, ("value", "locations", "weights")):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_core_gradcheck_recompute():
    value, loc, weights = _inputs(
        n=1, lq=2, heads=2, dim=2, points=2, shapes=[(3, 5), (2, 1)], seed=3
    )
    for t in (value, loc, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, locations, w: ms_deform_attn_core(
            v, [(3, 5), (2, 1)], locations, w, recompute_backward=True
        ),
        (value, loc, weights),
    )


def test_partial_requires_grad():
    """Only the weights need a gradient (value frozen): the recompute path returns just that."""
    value, loc, weights = _inputs(seed=4)
    weights.requires_grad_(True)
    out = ms_deform_attn_core(value, SHAPES, loc, weights)
    (g,) = torch.autograd.grad(out.sum(), (weights,))
    ref = ms_deform_attn_core_reference(value, SHAPES, loc, weights)
    (rg,) = torch.autograd.grad(ref.sum(), (weights,))
    torch.testing.assert_close(g, rg)


def test_pixel_centre_convention_and_zero_padding():
    """(x, y) = ((j + 0.5) / W, (i + 0.5) / H) reads pixel (i, j) exactly; far outside reads
    zero."""
    h, w = 3, 5
    value = torch.arange(h * w, dtype=torch.float64).view(1, h * w, 1, 1)
    loc = torch.tensor([[(1.5 / w, 2.5 / h)], [(-1.0, 0.5)]], dtype=torch.float64)  # [Lq=2, P=1, 2]
    loc = loc.view(1, 2, 1, 1, 1, 2)
    weights = torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn_core(value, [(h, w)], loc, weights)
    assert out[0, 0, 0].item() == pytest.approx(2 * w + 1)
    assert out[0, 1, 0].item() == 0.0
    # half a pixel beyond the left border: half of the border pixel (the outer neighbour is zero)
    loc_edge = torch.tensor([0.0, 0.5 / h], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    out_edge = ms_deform_attn_core(value, [(h, w)], loc_edge, weights[:, :1])
    assert out_edge[0, 0, 0].item() == pytest.approx(0.5 * value[0, 0, 0, 0].item())


def test_bad_shapes_raise_clear_errors():
    value, loc, weights = _inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn_core(value, [(7, 5), (3, 4)], loc, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_core(value, SHAPES, loc, weights[..., :1])


def _module_reference(module, query, ref_points, x, shapes, mask=None):
    """MSDeformAttn written out with the reference core (Deformable-DETR formulas)."""
    n, lq, _ = query.shape
    heads, levels, points = module.n_heads, module.n_levels, module.n_points
    value = module.value_proj(x)
    if mask is not None:
        value = value.masked_fill(mask[..., None], 0.0)
    value = value.view(n, x.shape[1], heads, -1)
    offsets = module.sampling_offsets(query).view(n, lq, heads, levels, points, 2)
    weights = F.softmax(module.attention_weights(query).view(n, lq, heads, levels * points), -1)
    weights = weights.view(n, lq, heads, levels, points)
    if ref_points.shape[-1] == 2:
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=x.dtype)
        loc = ref_points[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
    else:
        loc = (
            ref_points[:, :, None, :, None, :2]
            + offsets / points * ref_points[:, :, None, :, None, 2:] * 0.5
        )
    return module.output_proj(ms_deform_attn_core_reference(value, shapes, loc, weights))


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_module_matches_reference_with_padding_mask(ref_dim):
    torch.manual_seed(0)
    shapes = [(5, 3), (3, 2), (1, 1)]
    module = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=3).double()
    # non-zero offset/weight projections so the query matters
    torch.nn.init.normal_(module.sampling_offsets.weight, std=0.5)
    torch.nn.init.normal_(module.attention_weights.weight, std=0.5)
    s = sum(h * w for h, w in shapes)
    x = torch.randn(2, s, 8, dtype=torch.float64, requires_grad=True)
    query = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    ref = torch.rand(2, 4, 3, ref_dim, dtype=torch.float64)
    mask = torch.zeros(2, s, dtype=torch.bool)
    mask[1, 10:] = True
    spatial = torch.tensor(shapes, dtype=torch.long)
    out = module(query, ref, x, spatial, torch.tensor(level_start_index_from_shapes(shapes)), mask)
    expected = _module_reference(module, query, ref, x, shapes, mask)
    torch.testing.assert_close(out, expected)
    g = torch.autograd.grad(out.square().sum(), (x, query, module.sampling_offsets.weight))
    rg = torch.autograd.grad(expected.square().sum(), (x, query, module.sampling_offsets.weight))
    for a, b in zip(g, rg):
        torch.testing.assert_close(a, b)
    # masked tokens contribute nothing: the gradient w.r.t. their inputs is zero
    assert g[0][1, 10:].abs().max() == 0


def test_module_init_matches_deformable_detr():
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=8, n_points=3)
    bias = module.sampling_offsets.bias.view(8, 2, 3, 2)
    # head 0 points along +x, head 1 along the diagonal (normalised by the max coordinate), head 2
    # +y
    torch.testing.assert_close(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[1, 1, 2], torch.tensor([3.0, 3.0]))
    assert math.isclose(bias[2, 0, 0, 0].item(), 0.0, abs_tol=1e-6)
    assert module.sampling_offsets.weight.abs().sum() == 0
    assert module.attention_weights.weight.abs().sum() == 0
    assert module.attention_weights.bias.abs().sum() == 0


def test_float32_matches_float64():
    value, loc, weights = _inputs(n=2, lq=16, heads=4, dim=8, points=4, seed=5)
    out64 = ms_deform_attn_core(value, SHAPES, loc, weights)
    out32 = ms_deform_attn_core(value.float(), SHAPES, loc.float(), weights.float())
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)


def test_query_chunking_matches_reference(monkeypatch):
    """Without grad, queries are processed in chunks (>= 64 each): force several, incl. a ragged
    last one."""
    import vis_zoo.modeling.ms_deform_attn as mda

    monkeypatch.setattr(mda, "_SAMPLES_PER_CHUNK", 1)
    value, loc, weights = _inputs(n=1, lq=150, heads=2, dim=2, points=2, seed=6)
    with torch.no_grad():
        out = ms_deform_attn_core(value, SHAPES, loc, weights)
    ref = ms_deform_attn_core_reference(value[:, :, :, :], SHAPES, loc[:, ::7], weights[:, ::7])
    torch.testing.assert_close(out[:, ::7], ref, rtol=1e-10, atol=1e-10)


def test_benchmark_stacked_formulation_matches_core():
    """tools/benchmark_ms_deform_attn.py's baseline (official-style stacking) computes the same
    thing."""
    import importlib.util
    import os

    path = os.path.join(
        os.path.dirname(__file__), "..", "..", "tools", "benchmark_ms_deform_attn.py"
    )
    spec = importlib.util.spec_from_file_location("bench_msda", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    value, loc, weights = _inputs(seed=7)
    torch.testing.assert_close(
        bench.stacked_core(value, SHAPES, loc, weights),
        ms_deform_attn_core(value, SHAPES, loc, weights),
    )


def test_encoder_layer_ffn_row_chunks_match_one_pass(monkeypatch):
    """At inference the encoder FFN runs in blocks of tokens; the result equals the one-pass FFN."""
    from vis_zoo.modeling.deformable_transformer import (
        DeformableEncoderLayer,
        encoder_reference_points,
    )

    torch.manual_seed(0)
    layer = DeformableEncoderLayer(
        d_model=32, d_ffn=64, dropout=0.0, n_levels=2, n_heads=4, n_points=2
    ).eval()
    shapes = [(6, 8), (3, 4)]
    src = torch.randn(2, 60, 32)
    pos = torch.randn(2, 60, 32)
    ref_points = encoder_reference_points(torch.tensor(shapes), torch.ones(2, 2, 2))
    with torch.no_grad():
        one_pass = layer(src, pos, ref_points, shapes)
        monkeypatch.setattr(DeformableEncoderLayer, "FFN_ROWS_PER_PASS", 7)  # 120 rows -> 18 blocks
        chunked = layer(src, pos, ref_points, shapes)
    torch.testing.assert_close(chunked, one_pass)
    expected_ffn = layer.linear2(torch.relu(layer.linear1(src)))
    with torch.no_grad():
        torch.testing.assert_close(layer._ffn_in_row_chunks(src), expected_ffn)


@pytest.mark.parametrize("recompute", [True, False])
def test_core_samples_in_float32_under_bfloat16_autocast(recompute):
    """CPU autocast hands bfloat16 values (grid_sample has no bfloat16 CPU kernel): the core samples
    in
    float32 and returns the value's dtype, with gradients for every input."""
    value, loc, weights = (t.float() for t in _inputs())
    value_bf16 = value.bfloat16().requires_grad_()
    loc.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ms_deform_attn_core(value_bf16, SHAPES, loc, weights, recompute_backward=recompute)
    assert out.dtype == torch.bfloat16
    reference = ms_deform_attn_core_reference(
        value_bf16.detach().double(), SHAPES, loc.detach().double(), weights.double()
    )
    torch.testing.assert_close(out.double(), reference, rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    assert value_bf16.grad.dtype == torch.bfloat16 and torch.isfinite(loc.grad).all()
