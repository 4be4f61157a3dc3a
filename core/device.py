"""Device selection, mixed precision and reproducibility switches."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AmpSettings:
    enabled: bool
    dtype: torch.dtype | None  # autocast dtype when enabled
    use_grad_scaler: bool  # fp16 needs loss scaling; bf16 does not

    @property
    def label(self) -> str:
        return "off" if not self.enabled else str(self.dtype).removeprefix("torch.")


def select_device(prefer_cuda: bool = True, local_rank: int | None = None) -> torch.device:
    """CUDA when wanted and present (the rank's GPU under torchrun), else CPU."""
    if prefer_cuda and torch.cuda.is_available():
        index = local_rank if local_rank is not None else 0
        return torch.device("cuda", index % torch.cuda.device_count())
    return torch.device("cpu")


def amp_settings(device: torch.device, amp: bool) -> AmpSettings:
    """bf16 where the GPU supports it, else fp16 with a grad scaler; off on CPU."""
    if not amp or device.type != "cuda":
        return AmpSettings(False, None, False)
    if torch.cuda.is_bf16_supported():
        return AmpSettings(True, torch.bfloat16, False)
    return AmpSettings(True, torch.float16, True)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed every RNG; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
