"""Score windows with an exported ONNX scoring graph on ONNX Runtime.

The graph (``inference.export_onnx``) computes only the *basis* of
:func:`inference.scoring.infer_score`: ``model.scoring_errors(x).float().mean(dim=-1)``,
complementary masks included.  Everything after it (normal error profile, the stream's
breakdown, aggregation) is the shared :func:`inference.scoring.breakdown`, so an ONNX score
is computed by the same code as a PyTorch one and differs only by float rounding.

A graph belongs to one checkpoint: its JSON sidecar names the checkpoint's sha256, and
loading it for any other checkpoint (or with a sidecar from another export) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from core.errors import CheckpointError
from core.io import file_sha256
from core.paths import display_path, resolve_path
from inference.checkpoint_io import Trained
from inference.scoring import BACKENDS, breakdown
from streams.base import StreamTask

ONNX_DIR = "artifacts/onnx"
INPUT_NAME = "windows"
OUTPUT_NAME = "basis"
EXPORT_HINT = "re-export it with python -m inference.export_onnx"


def default_graph_path(stream: str) -> str:
    """Where ``python -m inference.export_onnx`` writes a stream's graph by default."""
    return f"{ONNX_DIR}/{stream}_scoring.onnx"


def scoring_backend(trained: Trained, backend: str, graph: str | Path | None = None
                    ) -> Callable[[torch.Tensor], np.ndarray] | None:
    """The model pass for ``backend``: None for PyTorch (the checkpoint's model), else the
    ONNX Runtime session of the graph exported from this very checkpoint."""
    if backend == "torch":
        return None
    if backend != "onnx":
        raise CheckpointError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = resolve_path(graph or default_graph_path(trained.stream))
    if not path.is_file():
        raise CheckpointError(
            f"{display_path(path)}: no ONNX graph for {trained.stream}; export it first: "
            f"python -m inference.export_onnx --stream {trained.stream} --checkpoint "
            f"{trained.ckpt_info['path']}")
    return OnnxScoringGraph(path, trained).basis


def sidecar_path(onnx_path: str | Path) -> Path:
    """The JSON that describes ``onnx_path`` (same name, ``.json``)."""
    return Path(onnx_path).with_suffix(".json")


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    """The sidecar of ``onnx_path``; CheckpointError when it is missing or unreadable."""
    shown = display_path(onnx_path)
    side = sidecar_path(onnx_path)
    if not onnx_path.is_file():
        raise CheckpointError(f"{shown}: ONNX graph not found")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{shown}: no readable sidecar {side.name} ({exc}); "
                              f"{EXPORT_HINT}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{shown}: sidecar {side.name} is not a mapping; {EXPORT_HINT}")
    return meta


def check_graph_matches(meta: dict[str, Any], onnx_path: Path, trained: Trained) -> None:
    """CheckpointError unless the graph was exported, as it is, from ``trained``'s checkpoint."""
    shown = display_path(onnx_path)
    info = trained.ckpt_info
    if meta.get("stream") != trained.stream:
        raise CheckpointError(f"{shown}: graph is for stream {meta.get('stream')!r}, checkpoint "
                              f"{info['path']} is {trained.stream!r}")
    if meta.get("checkpoint_sha256") != info["sha256"]:
        raise CheckpointError(f"{shown}: exported from checkpoint {meta.get('checkpoint')!r}, "
                              f"not from {info['path']} (sha256 differs); {EXPORT_HINT}")
    if meta.get("onnx_sha256") != file_sha256(onnx_path):
        raise CheckpointError(f"{shown}: the graph file is not the one its sidecar describes; "
                              f"{EXPORT_HINT}")


class OnnxScoringGraph:
    """An ONNX Runtime session for one checkpoint's scoring graph: windows -> basis."""

    def __init__(self, path: str | Path, trained: Trained, threads: int | None = None) -> None:
        """Load ``path`` for ``trained`` (refused if exported from another checkpoint).

        ``threads``: ONNX Runtime intra-op threads (None: its default, all cores).
        """
        self.path = resolve_path(path)
        self.meta = read_sidecar(self.path)
        check_graph_matches(self.meta, self.path, trained)
        self.input_shape = tuple(int(n) for n in self.meta["input_shape"])
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=["CPUExecutionProvider"])

    def basis(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Basis errors of a batch of windows, as ``infer_score`` keeps them in ``aux``."""
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"expected windows of shape (batch, {self.input_shape}), got "
                             f"{x.shape}")
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def onnx_infer_score(
    batch: torch.Tensor | np.ndarray,
    graph: OnnxScoringGraph,
    task: StreamTask,
    *,
    aggregation: str = "mean",
    top_k: int = 3,
    layout: Any = None,
    profile: torch.Tensor | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`inference.scoring.infer_score` with the model pass on ONNX Runtime."""
    basis = graph.basis(batch)
    score, aux = breakdown(basis, task, aggregation=aggregation, top_k=top_k,
                           profile=profile, layout=layout)
    aux["basis"] = basis
    return score, aux
