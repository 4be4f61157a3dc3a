"""PatchTST-style self-supervised masked patch reconstruction (pure model, no I/O).

A ``(B, T, C)`` batch is treated channel-independently: ``B*C`` univariate series, each cut
into ``N = T / P`` non-overlapping patches of length ``P``.  Some patches per series are
masked and the model reconstructs them; the loss is the MSE over masked patches only.

Speed (MAE-style): the Transformer encoder sees only the visible patches, so with a 60 %
mask it processes 40 % of the tokens.  A light decoder then lets one learned query per
masked patch (mask token + positional embedding) cross-attend to the encoded visible
patches, which serve as keys and values as they are, and a linear head maps each query back
to ``P`` values.  The query side of that attention depends only on the patch position, so it
is computed once per position, not once per series.  The loss reads the masked patches only,
never the scattered reconstruction.  (Measured on synthetic sines, 1500 steps: a full
self-attention decoder layer over all N tokens gave 15-30 % lower masked MSE but a ~27 %
slower training step.  Until 2026-12-02 the decoder also projected the encoded patches to
keys and values and ended in a feed-forward block (``decoder_kv_proj``, ``decoder_mlp``):
both lower the masked MSE a little (0.3 % on TEP validation), but without them a training
step at mask 0.6 runs 1.17-1.21x faster, and on the TEP tuning split detection was the same;
docs/benchmarks.md.)

There is deliberately no RevIN / instance normalisation: inputs are already robust-scaled
per channel, and a level shift of a whole window is an anomaly the model must not
normalise away.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.masking import (
    average_masked,
    covering_masks,
    masked_count,
    n_covering_masks,
    random_masks,
    stable_order,
)


def _sincos_table(n: int, d: int) -> torch.Tensor:
    """Sine/cosine table ``(n, d)`` used to *initialise* the learned positional embedding.

    A tiny random init leaves the patch order almost invisible at the start, and masked
    reconstruction then learns far more slowly (measured on synthetic sines: ~7x higher
    masked MSE after 400 steps than with this init).
    """
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table


class _Attention(nn.Module):
    """Multi-head attention on ``scaled_dot_product_attention`` (fused CPU/GPU kernels)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.proj = nn.Linear(d_model, d_model)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q (S, Lq, D)``, ``k/v (S, Lk, D)`` -> ``(S, Lq, D)`` after the output projection."""
        s, lq, d = q.shape
        h = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(s, -1, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(s, lq, d))


def _feed_forward(d_model: int, d_ff: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
    )


class _EncoderLayer(nn.Module):
    """Pre-norm Transformer layer with one fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn = _Attention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = _feed_forward(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.drop(self.attn.attend(q, k, v))
        return x + self.drop(self.ff(self.norm2(x)))


def _rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a 2-D ``table`` and an ``(S, k)`` index, by ``index_select``: its
    backward is a plain row sum, ~8x faster on CPU than advanced indexing's accumulate."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[-1])


class _MaskDecoder(nn.Module):
    """Masked-patch queries cross-attend to the encoded visible patches (optionally
    projected to keys and values), then optionally an MLP."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, mlp: bool, kv_proj: bool
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model) if kv_proj else None
        self.attn = _Attention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model) if mlp else None
        self.ff = _feed_forward(d_model, d_ff, dropout) if mlp else None
        self.drop = nn.Dropout(dropout)

    def forward(
        self, queries: torch.Tensor, masked_idx: torch.Tensor, memory: torch.Tensor
    ) -> torch.Tensor:
        """Queries ``(N, D)`` by position, ``masked_idx (S, k)``, memory ``(S, V, D)`` -> (S, k, D).

        Normalising and projecting the position-only queries before the gather costs N rows
        instead of S*k rows.
        """
        q = _rows(self.q(self.norm_q(queries)), masked_idx)
        k, v = self.kv(memory).chunk(2, dim=-1) if self.kv is not None else (memory, memory)
        x = _rows(queries, masked_idx) + self.drop(self.attn.attend(q, k, v))
        if self.ff is None:
            return x
        return x + self.drop(self.ff(self.norm2(x)))


class PatchTSTSSL(nn.Module):
    """Channel-independent masked patch reconstruction with an encoder over visible patches.

    Args:
        seq_len: window length ``T``; must be a multiple of ``patch_len``.
        patch_len: patch length ``P`` (non-overlapping patches).
        d_model, n_heads, n_layers, d_ff: Transformer encoder size; the decoder is one
            cross-attention block of the same width.
        decoder_mlp: follow the decoder's cross-attention with a feed-forward block.
        decoder_kv_proj: project the encoded patches to the decoder's keys and values
            (both were on before 2026-12-02; see the module notes).
        dropout: dropout in attention, residual and feed-forward paths.
        mask_ratio: fraction of patches masked per series; the count is
            ``round(mask_ratio * N)`` clipped to ``[1, N - 1]``.
    """

    def __init__(
        self,
        seq_len: int,
        patch_len: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        dropout: float = 0.0,
        mask_ratio: float = 0.4,
        decoder_mlp: bool = False,
        decoder_kv_proj: bool = False,
    ) -> None:
        super().__init__()
        if patch_len <= 0 or seq_len % patch_len:
            raise ValueError(f"seq_len ({seq_len}) must be a multiple of patch_len ({patch_len})")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.seq_len = seq_len
        self.patch_len = patch_len
        self.mask_ratio = mask_ratio
        self.n_masked = masked_count(mask_ratio, seq_len // patch_len)

        self.embed = nn.Linear(patch_len, d_model)
        self.pos = nn.Parameter(torch.zeros(self.n_patches, d_model))
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        self.encoder = nn.ModuleList(
            _EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.decoder = _MaskDecoder(d_model, n_heads, d_ff, dropout, decoder_mlp,
                                    decoder_kv_proj)
        self.head_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, patch_len)
        with torch.no_grad():
            self.pos.copy_(_sincos_table(self.n_patches, d_model))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    @property
    def n_patches(self) -> int:
        return self.seq_len // self.patch_len

    # ------------------------------------------------------------------ masks
    def random_mask(
        self,
        batch: int,
        n_channels: int,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Bool ``(B, C, N)``, True = masked, exactly ``n_masked`` per series.

        ``generator`` (on ``device``) makes the draw reproducible.
        """
        return random_masks((batch, n_channels), self.n_patches, self.n_masked, device, generator)

    def complementary_masks(
        self, batch: int, n_channels: int, device: torch.device | str
    ) -> list[torch.Tensor]:
        """Fixed masks ``(B, C, N)`` (``n_masked`` each, same for every series) covering all.

        Mask ``j`` hides an interleaved set of patches (see ``models.masking.covering_masks``);
        there are ``ceil(N / n_masked)`` masks, so a few patches are hidden twice.  A
        patch's score is the mean of its errors over the masks that hid it
        (:meth:`scoring_errors` does exactly that).
        """
        keys = torch.arange(self.n_patches, device=device)
        n_masks = n_covering_masks(self.n_patches, self.n_masked)
        masks = covering_masks(keys % n_masks, self.n_masked)
        return [m.expand(batch, n_channels, -1) for m in masks]

    # ------------------------------------------------------------------ model
    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` -> ``(B, C, N, P)``."""
        b, t, c = x.shape
        if t != self.seq_len:
            raise ValueError(f"expected sequences of length {self.seq_len}, got {t}")
        return x.transpose(1, 2).reshape(b, c, self.n_patches, self.patch_len)

    def _masked_count(self, mask: torch.Tensor, lead: tuple[int, int]) -> int:
        n = self.n_patches
        if mask.shape != (*lead, n) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape {(*lead, n)}, got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        counts = mask.sum(dim=-1)
        lo, hi = int(counts.min()), int(counts.max())
        if lo != hi or not 0 < lo < n:
            raise ValueError(f"every series must mask the same number of patches in [1, {n - 1}]"
                             f", got counts from {lo} to {hi}")
        return lo

    def _masked_predictions(
        self, target: torch.Tensor, mask: torch.Tensor, n_masked: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predictions ``(B*C, k, P)`` of the masked patches, their positions ``(B*C, k)`` and
        the true patches there ``(B*C, k, P)``.

        ``n_masked``: the mask's known count per series; None counts and checks it (a
        data-dependent step that keeps a graph from being exported).
        """
        b, c, n, p = target.shape
        k = self._masked_count(mask, (b, c)) if n_masked is None else n_masked
        series = target.reshape(b * c, n, p)
        # Stable order puts the visible positions first, both groups in position order.
        order = stable_order(mask.reshape(b * c, n))
        visible_idx, masked_idx = order[:, : n - k], order[:, n - k :]

        visible = torch.gather(series, 1, visible_idx.unsqueeze(-1).expand(-1, -1, p))
        h = self.embed(visible) + _rows(self.pos, visible_idx)
        for layer in self.encoder:
            h = layer(h)
        h = self.decoder(self.mask_token + self.pos, masked_idx, self.norm(h))
        pred = self.head(self.head_norm(h)).to(series.dtype)  # autocast may give bf16
        truth = torch.gather(series, 1, masked_idx.unsqueeze(-1).expand(-1, -1, p))
        return pred, masked_idx, truth

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruct masked patches of ``x (B, T, C)``.

        Returns ``loss`` (MSE over masked patches only), ``recon`` and ``target``
        ``(B, C, N, P)`` and the ``mask`` ``(B, C, N)`` used (a random one when None).
        ``recon`` equals ``target`` at visible patches: the model never predicts what it sees.
        """
        target = self._patchify(x)
        b, c, n, p = target.shape
        if mask is None:
            mask = self.random_mask(b, c, x.device)
        pred, masked_idx, truth = self._masked_predictions(target, mask)
        loss = (pred - truth).square().mean()  # the loss reads the k masked patches only
        recon = target.reshape(b * c, n, p).scatter(
            1, masked_idx.unsqueeze(-1).expand(-1, -1, p), pred).view(b, c, n, p)
        return {"loss": loss, "recon": recon, "target": target, "mask": mask}

    def patch_errors(
        self, x: torch.Tensor, mask: torch.Tensor, n_masked: int | None = None
    ) -> torch.Tensor:
        """Per-patch MSE ``(B, C, N)`` of the reconstruction under ``mask`` (0 where visible).

        ``n_masked``: the mask's count when known (see :meth:`_masked_predictions`).
        """
        target = self._patchify(x)
        b, c, n, _ = target.shape
        pred, masked_idx, truth = self._masked_predictions(target, mask, n_masked)
        errors = (pred - truth).square().mean(dim=-1)
        return errors.new_zeros(b * c, n).scatter(1, masked_idx, errors).view(b, c, n)

    def scoring_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic per-patch error ``(B, C, N)``: each patch averaged over the
        :meth:`complementary_masks` that hid it (same input -> same score)."""
        masks = self.complementary_masks(x.shape[0], x.shape[2], x.device)
        errors = [self.patch_errors(x, m, self.n_masked) for m in masks]
        return average_masked(errors, masks)
