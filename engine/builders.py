"""Build a stream's model from its (effective) config: shared by training and scoring."""

from __future__ import annotations

from typing import Any

from torch import nn

from core.config import PatchTSTConfig, StreamConfig, SwinMAEConfig


def build_model(cfg: StreamConfig, model_meta: dict[str, Any] | None = None) -> nn.Module:
    if isinstance(cfg, PatchTSTConfig):
        from models.patchtst_ssl import PatchTSTSSL

        m = cfg.model
        return PatchTSTSSL(
            seq_len=cfg.data.seq_len,
            patch_len=m.patch_len,
            d_model=m.d_model,
            n_heads=m.n_heads,
            n_layers=m.n_layers,
            d_ff=m.d_ff,
            dropout=m.dropout,
            mask_ratio=m.mask_ratio,
        )
    if isinstance(cfg, SwinMAEConfig):
        from models.swin_mae import SwinMAE

        m = cfg.model
        return SwinMAE(
            img_size=cfg.image.size,
            name=m.name,
            patch_size=m.patch_size,
            window_size=m.window_size,
            embed_dim=m.embed_dim,
            depths=list(m.depths),
            num_heads=list(m.num_heads),
            decoder_dim=m.decoder_dim,
            mask_ratio=m.mask_ratio,
        )
    raise TypeError(f"unknown config type {type(cfg).__name__}")
