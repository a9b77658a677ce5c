"""IFC's transformer: per-frame encoder blocks that talk only through memory-bus tokens, and a clip
decoder whose object queries attend to every frame's tokens and memory tokens.

Shapes: B videos, T frames, hw tokens per frame (stride-32 grid), M memory tokens, C channels,
Q queries, L decoder layers. Sequence-first as nn.MultiheadAttention.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from vis_zoo.modeling import TransformerDecoderLayer, TransformerEncoderLayer, clone_modules


class IFCEncoder(nn.Module):
    """`num_layers` x (encode-receive, gather-communicate):

    1. EncLayer_l on [frame tokens; bus tokens] of each frame (batch B*T, hw + M tokens).
    2. BusLayer_l: self-attention of each bus slot across the T frames of its video (batch B*M,
       T tokens, no position, no mask) -- the only inter-frame path, linear in T.
    """

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None):
        super().__init__()
        self.num_layers = num_layers
        self.enc_layers = clone_modules(encoder_layer, num_layers)
        self.bus_layers = clone_modules(encoder_layer, num_layers)
        # final norms exist only with pre-norm layers (None in the official post-norm model)
        self.out_norm = None if norm is None else clone_modules(norm, 1)[0]
        self.bus_norm = None if norm is None else clone_modules(norm, 1)[0]

    def forward(
        self,
        src: Tensor,
        memory_bus: Tensor,
        memory_pos: Tensor,
        key_padding_mask: Tensor,
        pos: Tensor,
        num_videos: int,
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            src: [hw, B*T, C] frame tokens; pos: [hw, B*T, C]; key_padding_mask: bool [B*T, hw].
            memory_bus, memory_pos: [M, C] learned tokens and their positions (same in every frame).
        Returns:
            frame tokens [hw, B*T, C], bus tokens [M, B*T, C].
        """
        hw, bt, c = src.shape
        b = num_videos
        t = bt // b
        m = memory_bus.shape[0]
        bus = memory_bus[:, None, :].repeat(1, bt, 1)
        pos = torch.cat((pos, memory_pos[:, None, :].repeat(1, bt, 1)))
        key_padding_mask = torch.cat((key_padding_mask, key_padding_mask.new_zeros((bt, m))), dim=1)

        out = src
        for layer_idx in range(self.num_layers):
            out = self.enc_layers[layer_idx](
                torch.cat((out, bus)), src_key_padding_mask=key_padding_mask, pos=pos
            )
            out, bus = out[:hw], out[hw:]
            bus = bus.view(m, b, t, c).permute(2, 1, 0, 3).flatten(1, 2)  # [T, B*M, C]
            bus = self.bus_layers[layer_idx](bus)
            bus = bus.view(t, b, m, c).permute(2, 1, 0, 3).flatten(1, 2)  # [M, B*T, C]

        if self.out_norm is not None:
            out = self.out_norm(out)
        if self.bus_norm is not None:
            bus = self.bus_norm(bus)
        return out, bus


class IFCDecoder(nn.Module):
    """DETR decoder over memory = [all frame tokens (t-major); all bus tokens (t-major)]."""

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module):
        super().__init__()
        self.layers = clone_modules(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        bus: Tensor,
        memory_pos: Tensor,
        pos: Tensor,
        key_padding_mask: Tensor,
        query_pos: Tensor,
        return_intermediate: bool,
    ) -> Tensor:
        """
        Args:
            tgt, query_pos: [Q, B, C]; memory, pos: [T*hw, B, C]; key_padding_mask: bool [B, T*hw];
            bus: [M, B*T, C]; memory_pos: [M, C].
        Returns:
            [L, Q, B, C] (every layer, each through the final norm) if return_intermediate, else [1,
            Q, B, C].
        """
        m, bt, c = bus.shape
        b = tgt.shape[1]
        t = bt // b
        memory = torch.cat((memory, bus.view(m, b, t, c).permute(2, 0, 1, 3).flatten(0, 1)))
        pos = torch.cat((pos, memory_pos[None, :, None, :].repeat(t, 1, b, 1).flatten(0, 1)))
        key_padding_mask = torch.cat(
            (key_padding_mask, key_padding_mask.new_zeros((b, t * m))), dim=1
        )

        out = tgt
        intermediate = []
        for layer in self.layers:
            out = layer(
                out, memory, memory_key_padding_mask=key_padding_mask, pos=pos, query_pos=query_pos
            )
            if return_intermediate:
                intermediate.append(self.norm(out))
        if return_intermediate:
            return torch.stack(intermediate)
        return self.norm(out).unsqueeze(0)


class IFCTransformer(nn.Module):
    """Encoder with memory bus + clip decoder (official ``IFCTransformer``).

    Init: xavier_uniform on every >1-D parameter of the layers; ``memory_bus`` and ``memory_pos``
    kaiming_normal (fan_out, relu).
    """

    def __init__(
        self,
        *,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        num_memory_bus: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        if num_memory_bus < 1:
            raise ValueError(f"IFCTransformer: num_memory_bus must be >= 1, got {num_memory_bus}")
        enc_layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation, normalize_before
        )
        self.encoder = IFCEncoder(
            enc_layer, num_encoder_layers, nn.LayerNorm(d_model) if normalize_before else None
        )
        dec_layer = TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation, normalize_before
        )
        self.decoder = IFCDecoder(dec_layer, num_decoder_layers, nn.LayerNorm(d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.memory_bus = nn.Parameter(torch.empty(num_memory_bus, d_model))
        self.memory_pos = nn.Parameter(torch.empty(num_memory_bus, d_model))
        nn.init.kaiming_normal_(self.memory_bus, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.memory_pos, mode="fan_out", nonlinearity="relu")
        self.d_model = d_model

    def forward(
        self,
        src: Tensor,
        mask: Tensor,
        query_embed: Tensor,
        pos_embed: Tensor,
        num_videos: int,
        return_intermediate: bool,
    ) -> Tuple[Tensor, Tensor]:
        """
        Args:
            src: [B*T, C, h, w] projected stride-32 features (video-major); mask: bool [B*T, h, w]
            (True = padding); query_embed: [Q, C]; pos_embed: [B*T, C, h, w].
        Returns:
            hs [L, B, Q, C] decoder outputs; memory [B*T, C, h, w] encoded frame features.
        """
        bt, c, h, w = src.shape
        b = num_videos
        t = bt // b
        frame_src = src.flatten(2).permute(2, 0, 1)  # [hw, BT, C]
        frame_pos = pos_embed.flatten(2).permute(2, 0, 1)
        frame_mask = mask.flatten(1)  # [BT, hw]
        enc, bus = self.encoder(
            frame_src, self.memory_bus, self.memory_pos, frame_mask, frame_pos, b
        )

        dec_src = enc.view(h * w, b, t, c).permute(2, 0, 1, 3).flatten(0, 1)  # [T*hw, B, C]
        dec_pos = pos_embed.view(b, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1)
        dec_mask = mask.view(b, t * h * w)
        query_pos = query_embed[:, None, :].repeat(1, b, 1)
        tgt = torch.zeros_like(query_pos)
        hs = self.decoder(
            tgt, dec_src, bus, self.memory_pos, dec_pos, dec_mask, query_pos, return_intermediate
        )
        memory = enc.permute(1, 2, 0).reshape(bt, c, h, w)
        return hs.transpose(1, 2), memory
