"""Mask helpers shared by both SSL models (pure tensor code, no I/O).

Both models mask a fixed number ``k`` of units (patches of a series, or cells of an image
grid) per sample: a fixed count keeps tensor shapes static, so the PatchTST encoder can drop
masked tokens with a gather instead of padding.
"""

from __future__ import annotations

import math

import torch


def masked_count(ratio: float, n_units: int) -> int:
    """``round(ratio * n_units)`` clipped to ``[1, n_units - 1]``.

    At least one unit must be hidden (else there is no loss) and one visible (else the
    encoder has no context).
    """
    if n_units < 2:
        raise ValueError(f"masking needs at least 2 units per sample, got {n_units}")
    return min(max(round(ratio * n_units), 1), n_units - 1)


def random_masks(
    lead_shape: tuple[int, ...],
    n_units: int,
    k: int,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool tensor ``(*lead_shape, n_units)`` with exactly ``k`` True (masked) per row.

    The k smallest of uniform noise per row are masked; a seeded ``generator`` (on ``device``)
    makes it reproducible.
    """
    noise = torch.rand((*lead_shape, n_units), device=device, generator=generator)
    chosen = noise.argsort(dim=-1)[..., :k]
    mask = torch.zeros(noise.shape, dtype=torch.bool, device=noise.device)
    return mask.scatter_(-1, chosen, True)


def stable_order(keys: torch.Tensor) -> torch.Tensor:
    """Indices sorting integer ``keys`` along the last axis, ties in index order.

    The same result as ``argsort(keys, stable=True)`` from a plain sort of unique keys
    (``key * n + index``): ONNX has no stable sort, so the scoring graphs export only this way.
    """
    n = keys.shape[-1]
    position = torch.arange(n, device=keys.device)
    return torch.argsort(keys.to(torch.int64) * n + position, dim=-1)


def n_covering_masks(n_units: int, k: int) -> int:
    """How many masks of ``k`` units :func:`covering_masks` needs to cover ``n_units``."""
    return math.ceil(n_units / k)


def covering_masks(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Deterministic masks ``(n_masks, n_units)``, each with exactly ``k`` units, covering all.

    Units are ordered by integer ``keys`` (stable, so ties keep their index order) and mask ``j``
    takes the cyclic window ``order[j*k : j*k + k]``.  Giving units with the same key
    ``key = position % n_masks`` (1-D) or ``(row + col) % n_masks`` (2-D) interleaves each
    mask over the whole sample, so every masked unit keeps visible neighbours, much like
    the random masks seen in training.  Because ``n_masks * k >= n_units`` the last window
    wraps around and the first ``n_masks * k - n_units`` units of the order are masked
    twice; callers average such units over the masks that hid them
    (see :func:`average_masked`).
    """
    n_units = keys.numel()
    order = stable_order(keys.flatten())
    n_masks = n_covering_masks(n_units, k)
    masks = torch.zeros(n_masks, n_units, dtype=torch.bool, device=keys.device)
    for j in range(n_masks):
        window = (j * k + torch.arange(k, device=keys.device)) % n_units
        masks[j, order[window]] = True
    return masks


def average_masked(errors: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """Per-position mean of ``errors[j]`` over the masks ``masks[j]`` (broadcastable) hiding it.

    A position hidden by two masks gets the mean of its two errors; a position hidden by
    none (impossible for :func:`covering_masks`) would get 0.
    """
    total = torch.zeros_like(errors[0])
    count = torch.zeros_like(errors[0])
    for err, mask in zip(errors, masks, strict=True):
        m = mask.to(err.dtype)
        total = total + err * m
        count = count + m
    return total / count.clamp_min(1.0)
