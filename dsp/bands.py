"""Frequency bands of a scalogram: which image rows fall in which log-spaced band.

The CWT has one row per analysis frequency (``dsp.cwt.frequencies``: log-spaced, row 0 =
``freq_max``) and is resized to ``image.size`` rows, so image row ``i`` is centred on CWT
row ``(i + 0.5) * n_freqs / size - 0.5``; ``dsp.cwt.image_row_frequencies`` applies that
map and each image row goes to the band holding its centre frequency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsp.cwt import CwtSpec, image_row_frequencies

DEFAULT_N_BANDS = 8


def _fmt_hz(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


@dataclass(frozen=True)
class BandLayout:
    """Log-spaced frequency bands and the image rows that fall in each."""

    edges_hz: np.ndarray  # (n_bands + 1,)
    row_band: np.ndarray  # (H,) band index of each image row
    unit: str = "Hz"  # "rows" for the fallback without known frequencies

    @classmethod
    def from_spec(cls, spec: CwtSpec, n_bands: int = DEFAULT_N_BANDS) -> BandLayout:
        """Bands log-spaced over ``freq_min..freq_max``; rows go by their centre frequency."""
        rows = image_row_frequencies(spec)
        n_bands = max(1, min(n_bands, spec.image_size))
        edges = np.geomspace(spec.freq_min, spec.freq_max, n_bands + 1)
        band = np.clip(np.searchsorted(edges, rows, side="right") - 1, 0, n_bands - 1)
        return cls(edges, band)

    @property
    def labels(self) -> list[str]:
        e = self.edges_hz
        return [f"{_fmt_hz(e[i])}-{_fmt_hz(e[i + 1])} {self.unit}" for i in range(len(e) - 1)]

    def band_errors(self, row_errors: torch.Tensor) -> torch.Tensor:
        """``row_errors (B, H)`` -> mean error per band ``(B, n_bands)`` (0 for an empty band)."""
        n_bands = len(self.edges_hz) - 1
        onehot = torch.zeros(row_errors.shape[1], n_bands, device=row_errors.device)
        onehot[torch.arange(row_errors.shape[1]), torch.as_tensor(self.row_band)] = 1.0
        return (row_errors @ onehot) / onehot.sum(dim=0).clamp_min(1.0)



def row_groups(height: int, n_bands: int = DEFAULT_N_BANDS) -> BandLayout:
    """Fallback when no frequencies are known: equal row groups, edges in row units."""
    n_bands = max(1, min(n_bands, height))
    edges = np.linspace(0, height, n_bands + 1)
    band = np.minimum((np.arange(height) * n_bands) // height, n_bands - 1)
    return BandLayout(edges, band, unit="rows")
