"""The VITA module: object encoder over frame queries (shifted temporal windows), object decoder
with video queries, and the class / mask-embedding / similarity heads (VITA paper, Sec. 3.2-3.3;
sukjunhwang/VITA, vita/modeling/transformer_decoder/vita.py).

Shapes: L = frame-decoder layers fed in (3 in training, 1 at test), B videos, T frames, fQ frame
queries per frame, cQ video queries, C channels, D = decoder outputs returned (all layers in
training with deep supervision, else the last).
"""

import math
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import Tensor, nn

from vis_zoo.config import num_classes_from_config
from vis_zoo.modeling.mask2former.layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from vis_zoo.modeling.transformer_layers import MLP

__all__ = [
    "VITAModule",
    "shifted_window_blocked",
    "streamed_cross_attention",
    "window_attention_mask",
]


def shifted_window_blocked(pad_mask: Tensor, window: int) -> Tensor:
    """Which frame pairs the shifted-window layers block (Swin-style, along time), per window.

    After rolling the time axis by ceil(W/2), the first window holds the last frames and the first
    frames together: its two halves must not see each other; padded frames (rolled to the front) are
    blocked in the first and last windows, in both directions. Every other window blocks nothing.

    Args:
        pad_mask: bool [N, T_pad], True on padded frames (T_pad = Nw * W).
    Returns:
        bool [N * Nw, W, W] (query frame, key frame), True where blocked; (n, window) order.
    """
    n, t_pad = pad_mask.shape
    num_windows = t_pad // window
    half = int(math.ceil(window / 2))
    rolled = (
        torch.roll(pad_mask, half, 1)
        .view(n, num_windows, window)[..., None]
        .repeat(1, 1, 1, window)
    )
    rolled[:, 0] = rolled[:, 0] | rolled[:, 0].transpose(-2, -1)
    rolled[:, -1] = rolled[:, -1] | rolled[:, -1].transpose(-2, -1)
    rolled[:, 0, :half, half:] = True
    rolled[:, 0, half:, :half] = True
    return rolled.view(n * num_windows, window, window)


def window_attention_mask(
    blocked: Tensor, num_queries: int, num_heads: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Frame-level blocked pairs bool [Nw', W, W] -> the additive attention mask of those windows,
    [Nw' * heads, W*fQ, W*fQ] of `dtype` with 0 (allowed) or -1000 (blocked), (window, head)
    order. For all the windows of `shifted_window_blocked` at once it is the official code's
    shifted-window mask; the test-time encoder builds it a group of windows at a time."""
    count, window, _ = blocked.shape
    size = window * num_queries
    expanded = blocked[:, None, :, None, :, None].expand(
        count, num_heads, window, num_queries, window, num_queries
    )
    mask = torch.zeros(
        (count, num_heads, window, num_queries, window, num_queries),
        dtype=dtype,
        device=blocked.device,
    )
    # -1000 rather than -inf: as the official code (a fully blocked row stays finite).
    return mask.masked_fill_(expanded, -1000.0).view(count * num_heads, size, size)


@torch.no_grad()
def streamed_cross_attention(
    layer: CrossAttentionLayer,
    tgt: Tensor,
    query_pos: Tensor,
    memory_blocks: Iterable[Tuple[Tensor, Tensor]],
) -> Tensor:
    """`layer(tgt, memory, pos=pos, query_pos=query_pos)` without the whole memory at once: the
    memory comes as blocks (memory [S_b, N, C], pos [S_b, N, C]) and the softmax over all of them
    is accumulated block by block (running maximum, rescaled sums), so memory is bounded by one
    block whatever the number of keys. Equal to the layer up to float rounding (no masks; the
    layer's dropout is 0 at test time).

    Args:
        tgt: [Q, N, C] queries; query_pos: [Q, N, C].
    Returns:
        [Q, N, C].
    """
    attn = layer.multihead_attn
    num_q, batch, channels = tgt.shape
    heads = attn.num_heads
    head_dim = channels // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    x = layer.norm(tgt) if layer.normalize_before else tgt
    q = F.linear(x + query_pos, w_q, b_q).view(num_q, batch * heads, head_dim).transpose(0, 1)
    q = q * head_dim**-0.5  # [N*h, Q, d]
    running_max = q.new_full((batch * heads, num_q, 1), -math.inf)
    denominator = q.new_zeros((batch * heads, num_q, 1))
    weighted = q.new_zeros((batch * heads, num_q, head_dim))
    for memory, pos in memory_blocks:
        length = memory.shape[0]
        k = F.linear(memory + pos, w_k, b_k).view(length, batch * heads, head_dim).transpose(0, 1)
        v = F.linear(memory, w_v, b_v).view(length, batch * heads, head_dim).transpose(0, 1)
        scores = torch.bmm(q, k.transpose(1, 2))  # [N*h, Q, S_b]
        new_max = torch.maximum(running_max, scores.amax(-1, keepdim=True))
        rescale = torch.exp(running_max - new_max)
        probs = torch.exp(scores - new_max)
        denominator = denominator * rescale + probs.sum(-1, keepdim=True)
        weighted = weighted * rescale + torch.bmm(probs, v)
        running_max = new_max
    out = (weighted / denominator).transpose(0, 1).reshape(num_q, batch, channels)
    return layer._add_residual(tgt, attn.out_proj(out))


class VITAModule(nn.Module):
    """forward(frame_queries [L, B*T, fQ, C], num_frames=T, query_index=None) -> dict

        "pred_logits" [L, B, cQ, K+1], "pred_mask_embed" [L, B, cQ, C] (last decoder layer),
        "pred_fq_embed" [L, B, T, fQ, C] (sim_embed_frame of the encoded frame queries),
        "pred_cq_embed" [L, B, cQ, C] (sim_embed_clip of the last decoder output),
        "aux_outputs": list of {"pred_logits", "pred_mask_embed"} for the earlier decoder layers.

    At test time only the last of the L inputs is used (as the official code). `query_index`
    [B*T, fQ'] (token pruning) says which of the detector's fQ queries each kept token is, so that
    each keeps its `fq_pos` embedding.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 256,
        hidden_dim: int = 256,
        num_classes: int,
        num_frame_queries: int = 100,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        enc_layers: int = 6,
        dec_layers: int = 3,
        enc_window_size: int = 6,
        pre_norm: bool = False,
        enforce_input_project: bool = True,
        mask_dim: int = 256,
        aux_loss: bool = True,
        sim_use_clip: bool = True,
        use_sim: bool = True,
        test_window_batch: int = 64,
    ):
        super().__init__()
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.enc_layers = enc_layers
        self.window_size = enc_window_size
        self.aux_loss = aux_loss
        self.sim_use_clip = sim_use_clip
        self.use_sim = use_sim
        self.num_queries = num_queries
        self.num_frame_queries = num_frame_queries
        self.test_window_batch = max(1, test_window_batch)

        self.enc_self_attn = nn.ModuleList()
        self.enc_ffn = nn.ModuleList()
        if enc_layers > 0:
            for _ in range(enc_layers):
                self.enc_self_attn.append(SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm))
                self.enc_ffn.append(
                    FFNLayer(hidden_dim, dim_feedforward, 0.0, normalize_before=pre_norm)
                )
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, 0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )

        self.vita_mask_features = nn.Conv2d(mask_dim, mask_dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.vita_mask_features.weight, a=1)  # c2_xavier_fill
        nn.init.constant_(self.vita_mask_features.bias, 0)

        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.fq_pos = nn.Embedding(num_frame_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj_dec = nn.Linear(hidden_dim, hidden_dim)
        else:
            self.input_proj_dec = nn.Sequential()
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        if use_sim:
            self.sim_embed_frame = nn.Linear(hidden_dim, hidden_dim)
            if sim_use_clip:
                self.sim_embed_clip = nn.Linear(hidden_dim, hidden_dim)

    @classmethod
    def from_config(cls, cfg) -> dict:
        v = cfg.MODEL.VITA
        return {
            "in_channels": cfg.MODEL.MASK_FORMER.HIDDEN_DIM,
            "hidden_dim": v.HIDDEN_DIM,
            "num_classes": num_classes_from_config(cfg),
            "num_frame_queries": cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES,
            "num_queries": v.NUM_OBJECT_QUERIES,
            "nheads": v.NHEADS,
            "dim_feedforward": v.DIM_FEEDFORWARD,
            "enc_layers": v.ENC_LAYERS,
            "dec_layers": v.DEC_LAYERS,
            "enc_window_size": v.ENC_WINDOW_SIZE,
            "pre_norm": v.PRE_NORM,
            "enforce_input_project": v.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "aux_loss": v.DEEP_SUPERVISION,
            "sim_use_clip": v.SIM_USE_CLIP,
            "use_sim": v.SIM_WEIGHT > 0.0,
            "test_window_batch": v.TEST_ENC_WINDOW_BATCH,
        }

    # ------------------------------------------------------------------ encoder
    def _encoder_layer(
        self, idx: int, tokens: Tensor, attn_mask=None, key_padding_mask=None
    ) -> Tensor:
        tokens = self.enc_self_attn[idx](
            tokens, tgt_mask=attn_mask, tgt_key_padding_mask=key_padding_mask
        )
        return self.enc_ffn[idx](tokens)

    def _windows_layer(
        self, idx: int, frame_query: Tensor, pad_mask: Tensor, shift_blocked: Optional[Tensor]
    ) -> Tensor:
        """One encoder layer over windows of W frames. frame_query [T_pad, fQ, LB, C], pad_mask
        bool [LB, T_pad]; with `shift_blocked` (`shifted_window_blocked`, bool [LB*Nw, W, W]) the
        windows are shifted by ceil(W/2) frames."""
        t_pad, fq, lb, c = frame_query.shape
        w = self.window_size
        nw = t_pad // w
        half = int(math.ceil(w / 2))
        shifted = shift_blocked is not None
        if shifted:
            frame_query = torch.roll(frame_query, half, 0)
        # windows as the batch axis, (lb, window) order: [W*fQ, LB*Nw, C]
        x = frame_query.view(nw, w, fq, lb, c).permute(1, 2, 3, 0, 4).reshape(w * fq, lb * nw, c)
        window_pad = pad_mask.view(lb * nw, w)[..., None].repeat(1, 1, fq).flatten(1)
        # Windows are independent: at test time run them in groups, each with its own part of the
        # masks, so that the attention scores and masks are bounded by a group whatever T is.
        # A group whose windows block nothing runs without a mask (adding zeros changes nothing).
        step = lb * nw if self.training else self.test_window_batch
        # which windows block anything, read once per layer (not once per group: a GPU sync each)
        blocks = (shift_blocked.flatten(1) if shifted else window_pad).any(1).tolist()
        outs = []
        for s in range(0, lb * nw, step):
            e = min(s + step, lb * nw)
            if shifted:
                mask = None
                if any(blocks[s:e]):
                    mask = window_attention_mask(shift_blocked[s:e], fq, self.num_heads, x.dtype)
                outs.append(self._encoder_layer(idx, x[:, s:e], attn_mask=mask))
            else:
                padding = window_pad[s:e] if any(blocks[s:e]) else None
                outs.append(self._encoder_layer(idx, x[:, s:e], key_padding_mask=padding))
        x = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        x = x.view(w, fq, lb, nw, c).permute(3, 0, 1, 2, 4).reshape(t_pad, fq, lb, c)
        if shifted:
            x = torch.roll(x, -half, 0)
        return x

    def encode_frame_query(self, frame_query: Tensor) -> Tensor:
        """[T, fQ, LB, C] -> [T, fQ, LB, C]."""
        t, fq, lb, c = frame_query.shape
        if self.enc_layers == 0:
            return frame_query
        if self.window_size == 0:
            x = frame_query.flatten(0, 1)
            for idx in range(self.enc_layers):
                x = self._encoder_layer(idx, x)
            return x.view(t, fq, lb, c)
        w = self.window_size
        pad = int(math.ceil(t / w)) * w - t
        x = F.pad(frame_query, (0, 0, 0, 0, 0, 0, 0, pad))
        pad_mask = torch.ones((lb, t + pad), dtype=torch.bool, device=x.device)
        pad_mask[:, :t] = False
        shift_blocked = None
        for idx in range(self.enc_layers):
            # as the official code: the odd layers shift their windows at test time only
            if self.training or idx % 2 == 0:
                x = self._windows_layer(idx, x, pad_mask, None)
            else:
                if shift_blocked is None:
                    shift_blocked = shifted_window_blocked(pad_mask, w)
                x = self._windows_layer(idx, x, pad_mask, shift_blocked)
        return x[:t]

    # ------------------------------------------------------------------ long videos
    def stream_context_frames(self) -> int:
        """Frames of context a block of the streamed encoder needs on either side: one window per
        shifted-window layer (18 frames for 6 layers of 6-frame windows).

        Why this suffices: a block starts and ends on the video's window boundaries, so an
        aligned-window layer sees the video's own windows; it only spreads what an earlier layer
        got wrong, to the end of that frame's window. A shifted layer's window at the block's edge
        misses the half window of frames beyond it, which makes at most half a window more wrong.
        Layers alternate, aligned first, so the wrong span at each edge grows W/2, W, 3W/2, 2W, ...
        and stays within one window per shifted layer. A test checks that one window less changes
        the kept tokens."""
        if self.window_size == 0:
            return 0
        return (self.enc_layers // 2) * self.window_size

    @torch.no_grad()
    def infer_streamed(
        self,
        read_queries: Callable[[int, int], Tensor],
        num_frames: int,
        encoded_store,
        query_index: Optional[Tensor] = None,
        block_frames: int = 120,
    ) -> Tuple[Tensor, Tensor]:
        """The test-time forward on a video of any length, with memory bounded by a block of
        frames: what `forward` gives as pred_logits[-1, 0] and pred_mask_embed[-1, 0], up to float
        rounding.

        The object encoder runs on blocks of frames, each with `stream_context_frames()` frames of
        context on either side, at most `block_frames` frames per call (its FFN activations grow
        with its frames), and keeps the block's own frames: windows are aligned to the video's, so
        every kept frame sees exactly the frames it would see in the whole video. The encoded
        tokens go to `encoded_store` (a `MaskFeatureStore`, e.g. on disk) and the object decoder's
        cross-attention reads them back a block at a time (`streamed_cross_attention`).

        Args:
            read_queries: (start, end) -> the last detector layer's frame queries
                [end - start, fQ, C].
            encoded_store: receives and gives back the encoded tokens [T, fQ, C].
            query_index: [T, fQ] (token pruning) or None.
        Returns:
            (class logits [cQ, K+1], mask embeddings [cQ, C]).
        """
        if self.window_size == 0 and self.enc_layers > 0:
            raise ValueError(
                "VITA: streaming needs the windowed object encoder (MODEL.VITA.ENC_WINDOW_SIZE > 0)"
            )
        w = max(1, self.window_size)
        context = self.stream_context_frames()
        block = max(w, (block_frames - 2 * context) // w * w)
        for start in range(0, num_frames, block):
            end = min(num_frames, start + block)
            lo, hi = max(0, start - context), min(num_frames, end + context)
            x = self.input_proj_dec(read_queries(lo, hi)[:, :, None])  # [t, fQ, 1, C]
            x = self.encode_frame_query(x)
            encoded_store.add(start, x[start - lo : end - lo, :, 0])
            del x

        def memory_blocks():
            for start in range(0, num_frames, block):
                end = min(num_frames, start + block)
                tokens = encoded_store.read(start, end)  # [t, fQ, C]
                if query_index is None:
                    pos = self.fq_pos.weight[None].expand(end - start, -1, -1)
                else:
                    pos = self.fq_pos.weight[query_index[start:end]]
                yield tokens.flatten(0, 1)[:, None], pos.flatten(0, 1)[:, None]

        query_embed = self.query_embed.weight[:, None]
        output = self.query_feat.weight[:, None]
        for i in range(self.num_layers):
            output = streamed_cross_attention(
                self.transformer_cross_attention_layers[i], output, query_embed, memory_blocks()
            )
            output = self.transformer_self_attention_layers[i](
                output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_embed
            )
            output = self.transformer_ffn_layers[i](output)
        decoded = self.decoder_norm(output)[:, 0]  # [cQ, C]
        return self.class_embed(decoded), self.mask_embed(decoded)

    # ------------------------------------------------------------------ forward
    def forward(
        self, frame_queries: Tensor, num_frames: int, query_index: Optional[Tensor] = None
    ) -> Dict:
        if not self.training:
            frame_queries = frame_queries[-1:]
        num_l, bt, fq, c = frame_queries.shape
        if bt % num_frames != 0:
            raise ValueError(
                f"VITA: {bt} frame-query sets is not a multiple of num_frames={num_frames}"
            )
        t = num_frames
        b = bt // t
        # [L, B*T, fQ, C] -> [T, fQ, L*B, C]
        x = frame_queries.reshape(num_l * b, t, fq, c).permute(1, 2, 0, 3)
        x = self.input_proj_dec(x)
        x = self.encode_frame_query(x)
        x = x.flatten(0, 1)  # [T*fQ, LB, C]

        out: Dict = {}
        if self.use_sim:
            fq_embed = self.sim_embed_frame(x)  # [T*fQ, LB, C]
            out["pred_fq_embed"] = fq_embed.transpose(0, 1).reshape(num_l, b, t, fq, c)

        src = x
        if query_index is None:
            # the same per-query position for every frame: no temporal encoding (as the official)
            dec_pos = self.fq_pos.weight[None, :, None, :].repeat(t, 1, num_l * b, 1).flatten(0, 1)
        else:
            if tuple(query_index.shape) != (bt, fq):
                raise ValueError(
                    f"VITA: query_index {tuple(query_index.shape)} does not match ({bt}, {fq})"
                )
            pos = self.fq_pos.weight[query_index]  # [B*T, fQ', C]
            pos = pos.view(b, t, fq, c).permute(1, 2, 0, 3)  # [T, fQ', B, C]
            dec_pos = pos.repeat(1, 1, num_l, 1).flatten(0, 1)
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, num_l * b, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, num_l * b, 1)

        decoder_outputs = []
        for i in range(self.num_layers):
            output = self.transformer_cross_attention_layers[i](
                output,
                src,
                memory_mask=None,
                memory_key_padding_mask=None,
                pos=dec_pos,
                query_pos=query_embed,
            )
            output = self.transformer_self_attention_layers[i](
                output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_embed
            )
            output = self.transformer_ffn_layers[i](output)
            if (self.training and self.aux_loss) or i == self.num_layers - 1:
                dec_out = self.decoder_norm(output).transpose(0, 1)  # [LB, cQ, C]
                decoder_outputs.append(dec_out.reshape(num_l, b, self.num_queries, c))
        decoder_outputs = torch.stack(decoder_outputs)  # [D, L, B, cQ, C]
        pred_cls = self.class_embed(decoder_outputs)
        pred_mask_embed = self.mask_embed(decoder_outputs)
        if self.use_sim and self.sim_use_clip:
            out["pred_cq_embed"] = self.sim_embed_clip(decoder_outputs[-1])
        out["pred_logits"] = pred_cls[-1]
        out["pred_mask_embed"] = pred_mask_embed[-1]
        out["aux_outputs"] = [
            {"pred_logits": a, "pred_mask_embed": m}
            for a, m in zip(pred_cls[:-1], pred_mask_embed[:-1])
        ]
        return out
