"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021) in pure PyTorch.

No compiled extension: bilinear sampling is `F.grid_sample` (align_corners=False, zero padding), so
the same code runs on CPU and CUDA. The numerics follow the official CUDA kernel and its PyTorch
fallback (`ms_deform_attn_core_pytorch`): a sampling location (x, y) in [0, 1] (normalised to the
level's width/height) is read at pixel coordinates (x * W - 0.5, y * H - 0.5), and samples outside
the map read zeros.

Memory: the official fallback stacks the samples of all levels into an [N * heads, head_dim, Lq,
levels, points] tensor, multiplies by the weights and sums. Here each level is sampled, weighted and
accumulated separately, so the largest temporary is one level's [N * heads, head_dim, Lq, points].
When gradients are needed, a custom autograd function keeps only its inputs (value, locations,
weights) and recomputes each level's samples in the backward pass, instead of keeping every level's
samples alive until the backward pass as plain autograd would.

Shapes (Deformable-DETR convention):
    value               [N, S, heads, head_dim], S = sum_l H_l * W_l (levels flattened in order)
    spatial_shapes      [L, 2] long tensor or sequence of (H_l, W_l)
    sampling_locations  [N, Lq, heads, L, points, 2], (x, y) in [0, 1]
    attention_weights   [N, Lq, heads, L, points]
    output              [N, Lq, heads * head_dim]
"""

import math
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ms_deform_attn_core",
    "ms_deform_attn_core_reference",
    "MSDeformAttn",
    "spatial_shapes_to_list",
    "level_start_index_from_shapes",
]

ShapesLike = Union[torch.Tensor, Sequence[Sequence[int]]]


def spatial_shapes_to_list(spatial_shapes: ShapesLike) -> List[Tuple[int, int]]:
    """[L, 2] tensor or sequence of (H, W) -> list of python (H, W) tuples."""
    if isinstance(spatial_shapes, torch.Tensor):
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
            raise ValueError(f"spatial_shapes must be [L, 2], got {tuple(spatial_shapes.shape)}")
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(int(h), int(w)) for h, w in spatial_shapes]


def level_start_index_from_shapes(spatial_shapes: ShapesLike) -> List[int]:
    """Offset of each level in the flattened token axis: [0, H0*W0, H0*W0 + H1*W1, ...]."""
    starts, total = [], 0
    for h, w in spatial_shapes_to_list(spatial_shapes):
        starts.append(total)
        total += h * w
    return starts


def _check_core_inputs(value, shapes, sampling_locations, attention_weights):
    n, s, heads, _ = value.shape
    total = sum(h * w for h, w in shapes)
    if total != s:
        raise ValueError(
            f"value has {s} tokens but spatial_shapes {shapes} describe {total} (sum of H*W)"
        )
    num_levels = len(shapes)
    if (
        sampling_locations.shape[0] != n
        or sampling_locations.shape[2] != heads
        or sampling_locations.shape[3] != num_levels
        or sampling_locations.shape[-1] != 2
    ):
        raise ValueError(
            f"sampling_locations must be [N={n}, Lq, heads={heads}, L={num_levels}, P, 2], "
            f"got {tuple(sampling_locations.shape)}"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights must be {tuple(sampling_locations.shape[:-1])}, "
            f"got {tuple(attention_weights.shape)}"
        )


def _level_values(value: torch.Tensor, shapes: List[Tuple[int, int]]) -> List[torch.Tensor]:
    """[N, S, M, D] -> per level [N*M, D, H_l, W_l] (one transposed copy shared by all levels)."""
    n, s, heads, dim = value.shape
    # [N, M, D, S]: one copy; each level is then a view with a contiguous last axis.
    value_t = value.permute(0, 2, 3, 1).reshape(n * heads, dim, s)
    out, start = [], 0
    for h, w in shapes:
        out.append(value_t[:, :, start : start + h * w].unflatten(2, (h, w)))
        start += h * w
    return out


def _sample_level(value_l, locations_l, weights_l):
    """Weighted bilinear samples of one level.

    value_l [N*M, D, H, W]; locations_l [N*M, P, Lq, 2] in [0, 1]; weights_l [N*M, P, Lq]
    -> [N*M, D, Lq]
    """
    grid = locations_l * 2 - 1  # grid_sample's [-1, 1] convention (align_corners=False)
    samples = F.grid_sample(
        value_l, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    # samples [N*M, D, P, Lq]: with the queries innermost, the weighting is a few vectorised
    # multiply-adds over long contiguous rows (2-3x faster on CPU than reducing a trailing P axis).
    out = samples[:, :, 0] * weights_l[:, None, 0]
    for p in range(1, samples.shape[2]):
        out = out.addcmul_(samples[:, :, p], weights_l[:, None, p])
    return out


def _per_level_inputs(sampling_locations, attention_weights, level):
    """Level `level` of the locations/weights, heads folded into the batch, queries innermost:
    locations [N*M, P, Lq, 2], weights [N*M, P, Lq]."""
    n, lq, heads, _, points, _ = sampling_locations.shape
    loc = (
        sampling_locations[:, :, :, level].permute(0, 2, 3, 1, 4).reshape(n * heads, points, lq, 2)
    )
    wts = attention_weights[:, :, :, level].permute(0, 2, 3, 1).reshape(n * heads, points, lq)
    return loc, wts


# Queries are processed in chunks whose per-level samples ([N*M, D, P, chunk]) stay about this size,
# so that sampling and weighting run in cache (about 2x faster on CPU) and the temporary stays
# small.
_SAMPLES_PER_CHUNK = 1 << 20


def _core_forward(value, shapes, sampling_locations, attention_weights):
    """Sum over levels of `_sample_level`; returns [N, Lq, M*D]."""
    n, _, heads, dim = value.shape
    lq, points = sampling_locations.shape[1], sampling_locations.shape[4]
    values = _level_values(value, shapes)
    chunk = lq
    if not torch.is_grad_enabled():
        chunk = max(64, _SAMPLES_PER_CHUNK // max(1, n * heads * dim * points))
    outs = []
    for q0 in range(0, lq, chunk):
        locs, wts_all = (
            sampling_locations[:, q0 : q0 + chunk],
            attention_weights[:, q0 : q0 + chunk],
        )
        out = None
        for level, value_l in enumerate(values):
            loc, wts = _per_level_inputs(locs, wts_all, level)
            contrib = _sample_level(value_l, loc, wts)
            out = contrib if out is None else out.add_(contrib)
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
    # [N*M, D, Lq] -> [N, Lq, M*D]
    return out.reshape(n, heads * dim, lq).transpose(1, 2).contiguous()


class _MSDeformAttnRecompute(torch.autograd.Function):
    """Deformable sampling whose backward recomputes each level's samples (saves only the
    inputs)."""

    @staticmethod
    def forward(ctx, value, sampling_locations, attention_weights, shapes):
        ctx.shapes = shapes
        ctx.save_for_backward(value, sampling_locations, attention_weights)
        return _core_forward(value, shapes, sampling_locations, attention_weights)

    @staticmethod
    def backward(ctx, grad_out):
        value, sampling_locations, attention_weights = ctx.saved_tensors
        shapes = ctx.shapes
        n, s, heads, dim = value.shape
        lq = sampling_locations.shape[1]
        # grad_out [N, Lq, M*D] -> [N*M, D, Lq], the layout of each level's contribution.
        grad_out = (
            grad_out.reshape(n, lq, heads, dim).permute(0, 2, 3, 1).reshape(n * heads, dim, lq)
        )
        need_v, need_loc, need_w = ctx.needs_input_grad[:3]
        grad_value_t = value.new_zeros(n * heads, dim, s) if need_v else None
        grad_loc = torch.zeros_like(sampling_locations) if need_loc else None
        grad_w = torch.zeros_like(attention_weights) if need_w else None
        start = 0
        for level, (h, w) in enumerate(shapes):
            with torch.enable_grad():
                value_l = value.detach().permute(0, 2, 3, 1)[..., start : start + h * w]
                value_l = value_l.reshape(n * heads, dim, h, w).requires_grad_(need_v)
                loc, wts = _per_level_inputs(
                    sampling_locations.detach(), attention_weights.detach(), level
                )
                loc.requires_grad_(need_loc)
                wts.requires_grad_(need_w)
                contrib = _sample_level(value_l, loc, wts)
                inputs = [
                    t for t, need in ((value_l, need_v), (loc, need_loc), (wts, need_w)) if need
                ]
                grads = list(torch.autograd.grad(contrib, inputs, grad_out))
            if need_v:
                grad_value_t[:, :, start : start + h * w] = grads.pop(0).flatten(2)
            if need_loc:
                g = grads.pop(0).view(n, heads, -1, lq, 2).permute(0, 3, 1, 2, 4)
                grad_loc[:, :, :, level] = g
            if need_w:
                g = grads.pop(0).view(n, heads, -1, lq).permute(0, 3, 1, 2)
                grad_w[:, :, :, level] = g
            start += h * w
        grad_value = None
        if need_v:
            grad_value = grad_value_t.view(n, heads, dim, s).permute(0, 3, 1, 2).contiguous()
        return grad_value, grad_loc, grad_w, None


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    recompute_backward: bool = True,
) -> torch.Tensor:
    """Multi-scale deformable sampling: sum over levels and points of weight * bilinear(value, loc).

    Args:
        value: [N, S, heads, head_dim].
        spatial_shapes: [L, 2] (H_l, W_l) per level, in the order the levels are flattened in
        `value`.
        sampling_locations: [N, Lq, heads, L, points, 2], (x, y) normalised to [0, 1].
        attention_weights: [N, Lq, heads, L, points] (already softmax-normalised by the caller).
        recompute_backward: when a gradient is needed, keep only the inputs and recompute the
            samples level by level in the backward pass (less memory, one extra sampling pass).
            Double backward is not supported in that mode.
    Returns:
        [N, Lq, heads * head_dim].
    """
    shapes = spatial_shapes_to_list(spatial_shapes)
    _check_core_inputs(value, shapes, sampling_locations, attention_weights)
    # The sampling always runs in float32 (float64 stays float64), autocast or not: the official
    # deformable-attention op is a CUDA kernel for float and double only, and grid_sample has no
    # bfloat16 CPU kernel. The result comes back in the value's dtype.
    compute_dtype = torch.promote_types(value.dtype, torch.float32)
    with torch.autocast(device_type=value.device.type, enabled=False):
        value_c, locations_c, weights_c = (
            t.to(compute_dtype) for t in (value, sampling_locations, attention_weights)
        )
        needs_grad = torch.is_grad_enabled() and (
            value.requires_grad
            or sampling_locations.requires_grad
            or attention_weights.requires_grad
        )
        if needs_grad and recompute_backward:
            out = _MSDeformAttnRecompute.apply(value_c, locations_c, weights_c, shapes)
        else:
            out = _core_forward(value_c, shapes, locations_c, weights_c)
    return out.to(value.dtype)


def ms_deform_attn_core_reference(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Direct loop-based definition (slow; for tests only). Same arguments/result as the core.

    For each (n, q, head, level, point): the location (x, y) is read at pixel coordinates
    (x * W - 0.5, y * H - 0.5) by bilinear interpolation of the four neighbouring pixels, each
    neighbour outside the map contributing zero; the results are weighted and summed.
    """
    shapes = spatial_shapes_to_list(spatial_shapes)
    n_batch, _, heads, dim = value.shape
    _, lq, _, num_levels, points, _ = sampling_locations.shape
    starts = level_start_index_from_shapes(shapes)
    out_rows = []
    for n in range(n_batch):
        rows_q = []
        for q in range(lq):
            per_head = []
            for m in range(heads):
                acc = value.new_zeros(dim)
                for lvl in range(num_levels):
                    h, w = shapes[lvl]
                    for p in range(points):
                        x = sampling_locations[n, q, m, lvl, p, 0] * w - 0.5
                        y = sampling_locations[n, q, m, lvl, p, 1] * h - 0.5
                        x0, y0 = torch.floor(x), torch.floor(y)
                        fx, fy = x - x0, y - y0
                        x0i, y0i = int(x0), int(y0)
                        sample = value.new_zeros(dim)
                        for dy, wy in ((0, 1 - fy), (1, fy)):
                            for dx, wx in ((0, 1 - fx), (1, fx)):
                                yy, xx = y0i + dy, x0i + dx
                                if 0 <= yy < h and 0 <= xx < w:
                                    sample = (
                                        sample + wy * wx * value[n, starts[lvl] + yy * w + xx, m]
                                    )
                        acc = acc + attention_weights[n, q, m, lvl, p] * sample
                per_head.append(acc)
            rows_q.append(torch.cat(per_head))
        out_rows.append(torch.stack(rows_q))
    return torch.stack(out_rows)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable-DETR parameter names and init).

    Parameters: `sampling_offsets` Linear(C, heads*levels*points*2), `attention_weights`
    Linear(C, heads*levels*points) (softmax over each head's levels*points), `value_proj` and
    `output_proj` Linear(C, C).
    """

    def __init__(
        self,
        d_model: int = 256,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        recompute_backward: bool = True,
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = (
            d_model,
            n_levels,
            n_heads,
            n_points,
        )
        self.recompute_backward = recompute_backward
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        # Offsets start on a ray per head (head m points at angle 2*pi*m/heads), point k at distance
        # k+1 (in level pixels), so the heads initially look in different directions.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def sampling(self, query, reference_points, spatial_shapes):
        """Sampling locations and attention weights for `query`.

        Args:
            query: [N, Lq, C].
            reference_points: [N, Lq, L, 2] (x, y) or [N, Lq, L, 4] (cx, cy, w, h), in [0, 1],
                already scaled by each level's valid ratio.
            spatial_shapes: [L, 2] long tensor of (H_l, W_l).
        Returns:
            locations [N, Lq, heads, L, points, 2], weights [N, Lq, heads, L, points].
        """
        n, lq, _ = query.shape
        offsets = self.sampling_offsets(query).view(
            n, lq, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            n, lq, self.n_heads, self.n_levels * self.n_points
        )
        weights = weights.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            if not isinstance(spatial_shapes, torch.Tensor):
                spatial_shapes = torch.as_tensor(spatial_shapes, dtype=torch.long)
            # offsets are in pixels of each level: divide by (W_l, H_l)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            normalizer = normalizer.to(device=query.device, dtype=query.dtype)
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            # offsets are relative to the box: at most half its size for the farthest point
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                "reference_points must end in 2 or 4 coordinates, got "
                f"{tuple(reference_points.shape)}"
            )
        return locations, weights

    def sample_features(
        self,
        query,
        reference_points,
        input_flatten,
        spatial_shapes,
        level_start_index=None,
        input_padding_mask=None,
    ):
        """Deformably sampled values before `output_proj`: [N, Lq, C].

        input_flatten [N, S, C]; input_padding_mask [N, S] (True = padding, value zeroed).
        `level_start_index` is accepted for API compatibility and derived from the shapes.
        """
        n, s, _ = input_flatten.shape
        shapes = spatial_shapes_to_list(spatial_shapes)
        if sum(h * w for h, w in shapes) != s:
            raise ValueError(
                f"input_flatten has {s} tokens, spatial_shapes {shapes} describe "
                f"{sum(h * w for h, w in shapes)}"
            )
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
        locations, weights = self.sampling(query, reference_points, spatial_shapes)
        return ms_deform_attn_core(value, shapes, locations, weights, self.recompute_backward)

    def forward(
        self,
        query,
        reference_points,
        input_flatten,
        input_spatial_shapes,
        input_level_start_index=None,
        input_padding_mask=None,
    ):
        """Deformable attention of `query` [N, Lq, C] over `input_flatten` [N, S, C] -> [N, Lq,
        C]."""
        sampled = self.sample_features(
            query,
            reference_points,
            input_flatten,
            input_spatial_shapes,
            input_level_start_index,
            input_padding_mask,
        )
        return self.output_proj(sampled)
