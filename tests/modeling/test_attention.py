"""MaskedMultiheadAttention: finite and equal to an explicit softmax where PyTorch's blocked CPU
kernel
gives NaN (a query whose first 512 keys are all blocked but which has an allowed key further on)."""

import pytest
import torch
from torch import nn

from vis_zoo.modeling.attention import (
    MASKED_SCORE,
    MaskedMultiheadAttention,
    additive_attention_mask,
)
from vis_zoo.modeling.mask2former.layers import CrossAttentionLayer, SelfAttentionLayer
from vis_zoo.modeling.transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer

D_MODEL, HEADS = 32, 4
NUM_KEYS = 960  # the 1/16 level of a 360x640 frame: more than one 512-key block


def explicit_attention(
    mha: nn.MultiheadAttention, query, key, value, attn_mask=None, key_padding_mask=None
):
    """Multi-head attention written out with -inf masking and a plain softmax (the reference).

    query [L, N, E], key/value [S, N, E], attn_mask bool [L, S] or [N*heads, L, S] or additive
    float,
    key_padding_mask bool [N, S] -> [L, N, E].
    """
    length, batch, embed = query.shape
    heads, head_dim = mha.num_heads, embed // mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)

    def split(x, w, b):  # [S, N, E] -> [N, heads, S, head_dim]
        return (x @ w.T + b).view(x.shape[0], batch, heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = split(query, w_q, b_q), split(key, w_k, b_k), split(value, w_v, b_v)
    scores = q @ k.transpose(-1, -2) / head_dim**0.5  # [N, heads, L, S]
    if attn_mask is not None:
        mask = (
            attn_mask.view(-1, heads, length, key.shape[0]) if attn_mask.dim() == 3 else attn_mask
        )
        scores = (
            scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        )
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).permute(2, 0, 1, 3).reshape(length, batch, embed)
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


def _tokens(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _first_block_blocked_mask(num_queries: int, batch: int) -> torch.Tensor:
    """bool [batch*HEADS, Q, NUM_KEYS]: the odd query rows may only see keys 600..959 (beyond the
    first
    512-key block), the even rows a random half of all keys."""
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(batch * HEADS, num_queries, NUM_KEYS, generator=gen) > 0.5
    mask[:, 1::2, :600] = True
    mask[:, 1::2, 600:] = False
    return mask


def test_masked_score_is_finite_in_every_float_dtype():
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        # Two masks summed (key padding + attention mask) must stay finite too.
        assert torch.isfinite(torch.tensor(2 * MASKED_SCORE, dtype=dtype))
        assert torch.exp(torch.tensor(MASKED_SCORE, dtype=dtype) + 1000) == 0


def test_additive_mask_from_bool_and_float():
    blocked = torch.tensor([[True, False], [False, True]])
    assert torch.equal(
        additive_attention_mask(blocked, torch.float32),
        torch.tensor([[MASKED_SCORE, 0.0], [0.0, MASKED_SCORE]]),
    )
    additive = torch.tensor([0.0, -1000.0, float("-inf")])
    assert torch.equal(
        additive_attention_mask(additive, torch.float32), torch.tensor([0.0, -1000.0, MASKED_SCORE])
    )
    assert additive_attention_mask(None, torch.float32) is None
    with pytest.raises(TypeError, match="bool or floating"):
        additive_attention_mask(torch.ones(2, dtype=torch.long), torch.float32)


def test_same_parameters_and_names_as_torch_attention():
    ours, theirs = MaskedMultiheadAttention(D_MODEL, HEADS), nn.MultiheadAttention(D_MODEL, HEADS)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


@pytest.mark.parametrize("batch", [1, 2])
def test_attention_mask_blocking_the_first_512_keys_gives_explicit_softmax(batch):
    torch.manual_seed(0)
    mha = MaskedMultiheadAttention(D_MODEL, HEADS).eval()
    query, key = _tokens(10, batch, D_MODEL, seed=1), _tokens(NUM_KEYS, batch, D_MODEL, seed=2)
    mask = _first_block_blocked_mask(10, batch)
    with torch.no_grad():
        out = mha(query, key, key, attn_mask=mask)[0]
        reference = explicit_attention(mha, query, key, key, attn_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_key_padding_of_the_first_512_keys_and_a_mask_together():
    torch.manual_seed(0)
    mha = MaskedMultiheadAttention(D_MODEL, HEADS).eval()
    query, key = _tokens(6, 2, D_MODEL, seed=4), _tokens(NUM_KEYS, 2, D_MODEL, seed=5)
    padding = torch.zeros(2, NUM_KEYS, dtype=torch.bool)
    padding[1, :700] = True  # the second sequence's first 700 keys are padding
    attn_mask = torch.zeros(2 * HEADS, 6, NUM_KEYS, dtype=torch.bool)
    attn_mask[:, 0, 700:800] = True
    with torch.no_grad():
        only_padding = mha(query, key, key, key_padding_mask=padding)[0]
        both = mha(query, key, key, key_padding_mask=padding, attn_mask=attn_mask)[0]
        additive = -1000.0 * attn_mask.float()  # VITA's shifted-window masks are additive floats
        with_float = mha(query, key, key, key_padding_mask=padding, attn_mask=additive)[0]
    torch.testing.assert_close(
        only_padding,
        explicit_attention(mha, query, key, key, key_padding_mask=padding),
        rtol=1e-5,
        atol=1e-5,
    )
    torch.testing.assert_close(
        both, explicit_attention(mha, query, key, key, attn_mask, padding), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        with_float,
        explicit_attention(mha, query, key, key, additive, padding),
        rtol=1e-5,
        atol=1e-5,
    )


def test_training_backward_is_finite():
    torch.manual_seed(0)
    mha = MaskedMultiheadAttention(D_MODEL, HEADS).train()
    query = _tokens(10, 1, D_MODEL, seed=6).requires_grad_()
    key = _tokens(NUM_KEYS, 1, D_MODEL, seed=7)
    out = mha(query, key, key, attn_mask=_first_block_blocked_mask(10, 1))[0]
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(query.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters())


def test_every_layer_that_takes_a_mask_is_finite_past_512_keys():
    """The Mask2Former blocks (VITA, MinVIS) and the DETR layers (VisTR, IFC) at 960 keys."""
    torch.manual_seed(0)
    queries, memory = _tokens(10, 1, D_MODEL, seed=8), _tokens(NUM_KEYS, 1, D_MODEL, seed=9)
    mask = _first_block_blocked_mask(10, 1)
    padding = torch.zeros(1, NUM_KEYS, dtype=torch.bool)
    padding[0, :600] = True
    with torch.no_grad():
        cross = CrossAttentionLayer(D_MODEL, HEADS).eval()
        assert torch.isfinite(cross(queries, memory, memory_mask=mask)).all()
        self_attn = SelfAttentionLayer(D_MODEL, HEADS).eval()
        assert torch.isfinite(self_attn(memory, tgt_key_padding_mask=padding)).all()
        encoder = TransformerEncoderLayer(D_MODEL, HEADS, 64, dropout=0.0).eval()
        assert torch.isfinite(encoder(memory, src_key_padding_mask=padding)).all()
        decoder = TransformerDecoderLayer(D_MODEL, HEADS, 64, dropout=0.0).eval()
        assert torch.isfinite(
            decoder(queries, memory, memory_key_padding_mask=padding, memory_mask=mask)
        ).all()
