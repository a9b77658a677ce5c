"""Deformable-DETR encoder pieces shared by SeqFormer (per-frame encoder) and Mask2Former-style
pixel decoders (VITA): multi-level flattening with level embeddings, valid ratios, encoder reference
points, the post-norm deformable encoder layer and the encoder stack.

Layout is batch-first: tokens are [N, S, C] with S = sum_l H_l * W_l, levels flattened in order.
Parameter names follow Deformable DETR / Mask2Former (`self_attn`, `norm1`, `linear1`, `linear2`,
`norm2`), so official checkpoints map one to one.
"""

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ms_deform_attn import MSDeformAttn
from .transformer_layers import clone_modules, get_activation_fn

__all__ = [
    "reset_deformable_parameters",
    "get_valid_ratio",
    "flatten_levels",
    "encoder_reference_points",
    "DeformableEncoderLayer",
    "DeformableEncoder",
]


def _cpu_autocast_enabled() -> bool:
    """Whether CPU autocast is on: `torch.is_autocast_enabled("cpu")` from PyTorch 2.4 (where
    `is_autocast_cpu_enabled()` is deprecated), `is_autocast_cpu_enabled()` before (no argument)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:
        return torch.is_autocast_cpu_enabled()


def reset_deformable_parameters(module: nn.Module) -> None:
    """Deformable DETR's transformer initialisation: xavier-uniform on every matrix of `module`,
    then each MSDeformAttn's own initialisation (which the xavier pass overwrote). Callers then set
    their level embeddings (normal) and other extras, in the official order, so seeded runs
    match."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    for m in module.modules():
        if isinstance(m, MSDeformAttn):
            m._reset_parameters()


def get_valid_ratio(mask: Tensor) -> Tensor:
    """Fraction of each map that is not padding. mask bool [N, H, W] (True = padded) -> [N, 2] (w,
    h).

    Read from the first row/column, as in Deformable DETR (padding is bottom/right).
    """
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)
    valid_w = (~mask[:, 0, :]).sum(1)
    return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)


def flatten_levels(
    srcs: Sequence[Tensor],
    masks: Sequence[Tensor],
    pos_embeds: Sequence[Tensor],
    level_embed: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Flatten L feature maps into one token sequence.

    Args:
        srcs: L tensors [N, C, H_l, W_l]. masks: L bool [N, H_l, W_l] (True = padding).
        pos_embeds: L tensors [N, C, H_l, W_l]. level_embed: [L, C], added to each level's
        positions.
    Returns:
        src [N, S, C], mask [N, S], pos [N, S, C], spatial_shapes long [L, 2] (H_l, W_l),
        level_start_index long [L].
    """
    src_flat, mask_flat, pos_flat, shapes = [], [], [], []
    for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
        shapes.append(src.shape[-2:])
        src_flat.append(src.flatten(2).transpose(1, 2))
        mask_flat.append(mask.flatten(1))
        pos = pos.flatten(2).transpose(1, 2)
        if level_embed is not None:
            pos = pos + level_embed[lvl].view(1, 1, -1)
        pos_flat.append(pos)
    device = srcs[0].device
    spatial_shapes = torch.as_tensor([tuple(s) for s in shapes], dtype=torch.long, device=device)
    level_start_index = torch.cat(
        (spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1])
    )
    return (
        torch.cat(src_flat, 1),
        torch.cat(mask_flat, 1),
        torch.cat(pos_flat, 1),
        spatial_shapes,
        level_start_index,
    )


def encoder_reference_points(spatial_shapes, valid_ratios: Tensor) -> Tensor:
    """Reference point of every token: its pixel centre, normalised by the valid extent of its
    level.

    Args:
        spatial_shapes: [L, 2] (H_l, W_l). valid_ratios: [N, L, 2] (w, h).
    Returns:
        [N, S, L, 2] (x, y): the token's centre in each level's valid-normalised frame.
    """
    device = valid_ratios.device
    refs = []
    for lvl, (h, w) in enumerate([(int(h), int(w)) for h, w in spatial_shapes]):
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
        refs.append(torch.stack((ref_x, ref_y), -1))
    ref = torch.cat(refs, 1)
    return ref[:, :, None] * valid_ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    """Post-norm deformable encoder layer (dropout as Deformable DETR):

        src = norm1(src + SelfAttn(query=src + pos, value=src))
        src = norm2(src + linear2(act(linear1(src))))

    `attn` lets a method use an MSDeformAttn subclass (SeqFormer's has an extra, unused projection).
    """

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        attn: Optional[Callable[..., nn.Module]] = None,
    ):
        super().__init__()
        attn = attn or MSDeformAttn
        self.self_attn = attn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = get_activation_fn(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Optional[Tensor],
        reference_points: Tensor,
        spatial_shapes,
        level_start_index=None,
        padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """src, pos [N, S, C]; reference_points [N, S, L, 2]; padding_mask [N, S] -> [N, S, C]."""
        query = src if pos is None else src + pos
        src2 = self.self_attn(
            query, reference_points, src, spatial_shapes, level_start_index, padding_mask
        )
        src = self.norm1(src + self.dropout1(src2))
        if torch.is_grad_enabled() or self.training:
            src2 = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        else:
            src2 = self._ffn_in_row_chunks(src)
        return self.norm2(src + self.dropout3(src2))

    # Tokens per FFN pass at inference: the [rows, d_ffn] hidden stays a few MB (reused by the
    # allocator and cache-resident) instead of one [N*S, d_ffn] buffer of hundreds of MB at high
    # resolution, which is mapped fresh (page faults) on every call. Rows are independent, so the
    # result is the same.
    FFN_ROWS_PER_PASS = 4096

    def _ffn_in_row_chunks(self, src: Tensor) -> Tensor:
        """linear2(act(linear1(src))) over [N, S, C] in blocks of FFN_ROWS_PER_PASS tokens (no
        grad).

        One hidden buffer serves every block and the second matmul writes straight into the output,
        so the loop allocates nothing large (same `addmm` calls as nn.Linear, same values)."""
        flat = src.reshape(-1, src.shape[-1])
        rows = self.FFN_ROWS_PER_PASS
        autocast = torch.is_autocast_enabled() or _cpu_autocast_enabled()  # out= needs one dtype
        if (
            flat.shape[0] <= rows
            or autocast
            or self.linear1.bias is None
            or self.linear2.bias is None
        ):
            return self.linear2(self.activation(self.linear1(src)))
        out = flat.new_empty((flat.shape[0], self.linear2.out_features))
        hidden = flat.new_empty((rows, self.linear1.out_features))
        w1, w2 = self.linear1.weight.t(), self.linear2.weight.t()
        for start in range(0, flat.shape[0], rows):
            block = flat[start : start + rows]
            h = hidden[: block.shape[0]]
            torch.addmm(self.linear1.bias, block, w1, out=h)
            h = h.relu_() if self.activation is F.relu else self.activation(h)
            torch.addmm(self.linear2.bias, h, w2, out=out[start : start + block.shape[0]])
        return out.view(*src.shape[:-1], -1)


class DeformableEncoder(nn.Module):
    """`num_layers` clones of an encoder layer over the flattened multi-level tokens."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = clone_modules(encoder_layer, num_layers)
        self.num_layers = num_layers

    def forward(
        self,
        src: Tensor,
        spatial_shapes,
        level_start_index,
        valid_ratios: Tensor,
        pos: Optional[Tensor] = None,
        padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """src [N, S, C], valid_ratios [N, L, 2], pos [N, S, C], padding_mask [N, S] -> [N, S,
        C]."""
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        # python (H, W) pairs once, instead of a device->host copy in every layer
        shapes = (
            [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
            if isinstance(spatial_shapes, Tensor)
            else spatial_shapes
        )
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, shapes, level_start_index, padding_mask)
        return out
