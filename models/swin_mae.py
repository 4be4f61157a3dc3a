"""Swin masked image modelling (SimMIM-style) on scalogram images (pure model, no I/O).

A timm Swin Transformer (random init, weights never downloaded) encodes the image after
masked patch tokens were replaced by a learned mask token; Swin's shifted windows need the
full token grid, so masked tokens stay in place rather than being dropped.  The mask unit
is the encoder's final stride (``patch_size * 2**(stages-1)`` pixels), so a masked unit
is completely hidden in every token of the last stage.  A light decoder (per-token MLP +
pixel shuffle) reconstructs every pixel; the loss is the MSE over masked pixels only.
"""

from __future__ import annotations

import timm
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from models.masking import (
    average_masked,
    covering_masks,
    masked_count,
    n_covering_masks,
    random_masks,
)


def _check_sizes(
    img_size: int, patch_size: int, window_size: int, depths: list[int], num_heads: list[int]
) -> None:
    """Raise ValueError, naming the parameters, for shapes Swin + unit masking cannot use.

    timm would silently pad a stage whose grid is not a multiple of the window; padded
    windows mix zero tokens into attention, so such sizes are rejected instead.  A stage
    grid no larger than the window is fine (timm shrinks the window to the grid).
    """
    if len(depths) == 0 or len(depths) != len(num_heads):
        raise ValueError(f"depths {depths} and num_heads {num_heads} must be non-empty and of "
                         "equal length (one entry per Swin stage)")
    unit = patch_size * 2 ** (len(depths) - 1)
    if img_size % unit:
        raise ValueError(f"img_size ({img_size}) must be a multiple of the mask unit "
                         f"patch_size * 2**(len(depths)-1) = {patch_size} * "
                         f"{2 ** (len(depths) - 1)} = {unit}")
    if img_size // unit < 2:
        raise ValueError(f"img_size ({img_size}) gives a {img_size // unit}x{img_size // unit} "
                         f"mask grid (unit {unit}); need at least 2 units to mask some and keep "
                         "some visible")
    for stage in range(len(depths)):
        grid = img_size // (patch_size * 2**stage)
        if grid > window_size and grid % window_size:
            raise ValueError(f"stage {stage} feature size {grid} (img_size {img_size} / "
                             f"(patch_size {patch_size} * 2**{stage})) must be a multiple of "
                             f"window_size ({window_size}) or at most window_size")


def _build_encoder(name: str, **shape: object) -> SwinTransformer:
    """timm Swin (v1) with random weights; the MAE reuses its patch_embed, layers and norm."""
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **shape)
    except (RuntimeError, TypeError) as exc:  # unknown name / not a Swin constructor
        raise ValueError(f"name {name!r}: not a timm Swin Transformer architecture ({exc})"
                         ) from None
    if not isinstance(model, SwinTransformer):
        raise ValueError(f"name {name!r} is a timm {type(model).__name__}, not a Swin "
                         "Transformer (v1) such as swin_tiny_patch4_window7_224")
    return model


class SwinMAE(nn.Module):
    """Masked image modelling with a timm Swin encoder and a pixel-shuffle decoder.

    Args:
        img_size: square input size ``H = W`` in pixels.
        name: timm Swin architecture name (e.g. ``swin_tiny_patch4_window7_224``); the
            explicit size arguments below override that architecture's defaults.
        patch_size, window_size, embed_dim, depths, num_heads: Swin encoder shape.
        decoder_dim: hidden width of the per-token decoder MLP.
        mask_ratio: fraction of mask units hidden; count ``round(mask_ratio * Hm * Wm)``
            clipped to ``[1, Hm*Wm - 1]``.
        in_chans: image channels (3: the x/y/z scalograms).
    """

    def __init__(
        self,
        img_size: int,
        name: str,
        patch_size: int,
        window_size: int,
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        decoder_dim: int,
        mask_ratio: float,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        _check_sizes(img_size, patch_size, window_size, list(depths), list(num_heads))
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.img_size = img_size
        self.in_chans = in_chans
        self.mask_ratio = mask_ratio
        self._unit = patch_size * 2 ** (len(depths) - 1)
        self._token_per_unit = 2 ** (len(depths) - 1)
        self.grid = img_size // self._unit
        self.n_masked = masked_count(mask_ratio, self.grid * self.grid)

        self.encoder = _build_encoder(
            name,
            img_size=img_size,
            patch_size=patch_size,
            window_size=window_size,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            in_chans=in_chans,
        )
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            nn.Conv2d(self.encoder.num_features, decoder_dim, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(decoder_dim, self._unit**2 * in_chans, kernel_size=1),
            nn.PixelShuffle(self._unit),
        )

    @property
    def mask_unit(self) -> int:
        """Side of one mask unit in pixels (the encoder's final stride)."""
        return self._unit

    # ------------------------------------------------------------------ masks
    def random_mask(
        self, batch: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bool ``(B, Hm, Wm)``, True = masked, exactly ``n_masked`` units per image."""
        flat = random_masks((batch,), self.grid * self.grid, self.n_masked, device, generator)
        return flat.view(batch, self.grid, self.grid)

    def complementary_masks(self, batch: int, device: torch.device | str) -> list[torch.Tensor]:
        """Fixed masks ``(B, Hm, Wm)`` (``n_masked`` units each) that together hide every unit.

        Units are interleaved diagonally (``(row + col) % n_masks``; a checkerboard for
        two masks), see ``models.masking.covering_masks``.  A unit hidden by more than one
        mask is scored by the mean of its errors over those masks (:meth:`scoring_errors`).
        """
        rows = torch.arange(self.grid, device=device)
        keys = rows[:, None] + rows[None, :]
        n_masks = n_covering_masks(self.grid * self.grid, self.n_masked)
        masks = covering_masks(keys % n_masks, self.n_masked)
        return [m.view(self.grid, self.grid).expand(batch, -1, -1) for m in masks]

    # ------------------------------------------------------------------ model
    def _check_mask(self, mask: torch.Tensor, batch: int) -> None:
        shape = (batch, self.grid, self.grid)
        if mask.shape != shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape {shape}, got "
                             f"{mask.dtype} {tuple(mask.shape)}")

    def pixel_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Unit mask ``(B, Hm, Wm)`` -> pixel mask ``(B, 1, H, W)``."""
        up = mask.repeat_interleave(self._unit, 1).repeat_interleave(self._unit, 2)
        return up.unsqueeze(1)

    def _reconstruct(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self._check_mask(mask, img.shape[0])
        tokens = self.encoder.patch_embed(img)  # (B, Hp, Wp, C), channels-last
        f = self._token_per_unit
        hidden = mask.repeat_interleave(f, 1).repeat_interleave(f, 2).unsqueeze(-1)
        tokens = torch.where(hidden, self.mask_token.to(tokens.dtype), tokens)
        feats = self.encoder.norm(self.encoder.layers(tokens))  # (B, Hm, Wm, C_last)
        return self.decoder(feats.permute(0, 3, 1, 2))

    def forward(
        self, img: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Reconstruct ``img (B, C, H, W)``; ``loss`` is the MSE over masked pixels only.

        ``recon`` is the decoder output at every pixel; ``mask`` is the ``(B, Hm, Wm)``
        unit mask used (random when None).
        """
        if mask is None:
            mask = self.random_mask(img.shape[0], img.device)
        recon = self._reconstruct(img, mask)
        px = self.pixel_mask(mask).to(recon.dtype)
        loss = ((recon - img).square() * px).sum() / (px.sum() * img.shape[1])
        return {"loss": loss, "recon": recon, "mask": mask}

    def pixel_errors(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Squared error ``(B, C, H, W)`` at masked pixels, 0 at visible ones."""
        err = (self._reconstruct(img, mask) - img).square()
        return err * self.pixel_mask(mask).to(err.dtype)

    def scoring_errors(self, img: torch.Tensor) -> torch.Tensor:
        """Deterministic per-pixel error ``(B, C, H, W)``: each pixel averaged over the
        :meth:`complementary_masks` that hid it (same input -> same score)."""
        masks = self.complementary_masks(img.shape[0], img.device)
        errors = [self.pixel_errors(img, m) for m in masks]
        return average_masked(errors, [self.pixel_mask(m) for m in masks])
