"""Multi-head attention whose masks never turn into NaN.

Every attention layer of the zoo (DETR-style layers of VisTR and IFC, Mask2Former's masked attention
used by VITA and MinVIS, VITA's object encoder) is built from :class:`MaskedMultiheadAttention`. It
is ``nn.MultiheadAttention`` with the same parameters and state-dict names (``in_proj_weight``,
``in_proj_bias``, ``out_proj.*``), so official checkpoints load unchanged; only the way masks reach
the attention kernel differs.

Why: ``nn.MultiheadAttention`` turns a boolean mask into an additive one holding ``-inf``. With
``need_weights=False`` PyTorch sends the call to ``scaled_dot_product_attention``, whose CPU
flash-attention kernel (PyTorch 2.3) walks the keys in blocks of 512 with a running maximum. For a
query whose first block is entirely masked the running maximum is ``-inf`` and ``exp(-inf -
(-inf))`` is NaN, even when an allowed key comes later (pytorch/pytorch#127055). Mask2Former's
masked attention blocks most keys of most queries, so at 360×640 (960 keys at 1/16, 3,600 at 1/8)
NaN appears as soon as a predicted mask lies in the lower part of the frame, and self-attention then
spreads it to every query.

We write blocked positions as the finite value :data:`MASKED_SCORE` instead of ``-inf``. It is
finite in float16, bfloat16 and float32 (so no kernel or cast turns it back into ``-inf``) and so
far below any real attention score that ``exp(masked - best)`` is exactly 0: wherever a query has at
least one allowed key the result equals the explicit softmax with ``-inf``, on every kernel
(blocked, math or CUDA). A query with every key blocked attends uniformly instead of giving NaN;
Mask2Former-style decoders unblock such rows before the call anyway, as the official code does.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["MASKED_SCORE", "MaskedMultiheadAttention", "additive_attention_mask"]

# -3e4: representable in float16 (max 65504) even when a key-padding mask and an attention mask are
# summed (-6e4), and exp(-3e4 + s) == 0 in every float format for any score s < ~3e4.
MASKED_SCORE = -3.0e4


def additive_attention_mask(mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """A boolean mask (True = blocked) as an additive float mask holding :data:`MASKED_SCORE`.

    Args:
        mask: bool or float tensor of any shape, or None. Float masks are additive already; their
            ``-inf`` entries (if any) are raised to :data:`MASKED_SCORE` for the same reason.
        dtype: floating dtype of the result (the attention's query dtype).
    Returns:
        None, or a float tensor of ``mask``'s shape and ``dtype``: 0 where allowed, MASKED_SCORE (or
        the given additive value) where blocked.
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, MASKED_SCORE
        )
    if not torch.is_floating_point(mask):
        raise TypeError(f"attention masks must be bool or floating point, got {mask.dtype}")
    return mask.to(dtype).clamp_min(MASKED_SCORE)


class MaskedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (sequence-first) that passes masks as finite additive values.

    forward(query [L, N, E], key [S, N, E], value [S, N, E], key_padding_mask bool/float [N, S]
    (True = ignore), attn_mask bool/float [L, S] or [N*heads, L, S] (True = blocked)) ->
    (output [L, N, E], weights or None). ``need_weights`` defaults to False (the fused kernels).
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        attn_mask: Optional[Tensor] = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        return super().forward(
            query,
            key,
            value,
            key_padding_mask=additive_attention_mask(key_padding_mask, query.dtype),
            need_weights=need_weights,
            attn_mask=additive_attention_mask(attn_mask, query.dtype),
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
