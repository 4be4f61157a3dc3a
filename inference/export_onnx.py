"""Export a checkpoint's deterministic scoring graph to ONNX, with a JSON sidecar.

    python -m inference.export_onnx --stream patchtst \\
        --checkpoint checkpoints/patchtst_ssl.pt --config configs/patchtst_ssl_local.yaml

The graph is ``windows -> model.scoring_errors(windows).float().mean(dim=-1)``, the *basis*
of :func:`inference.scoring.infer_score`: FDC windows ``(B, T, C)`` -> ``(B, C)``,
scalograms ``(B, 3, H, W)`` -> ``(B, 3, H)``.  The complementary masks are inside it (they
are constants for a window shape); the batch axis is dynamic; the breakdown and
aggregation stay shared Python (``inference.onnx_scoring``).  Opset :data:`ONNX_OPSET`.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript).  It states
the dynamic batch axis as a symbolic dimension and fails loudly if the model would bake a
batch size in, and its optimiser folds the mask construction into constants.  The legacy
TorchScript tracer (``dynamo=False``) also exports both models and is ~5x faster, but it
is deprecated and silently turns every Python-level shape check into a constant of the
example batch (TracerWarnings), which is the failure mode a parity graph must not have.
Two model details were made exportable without changing any eager result: ONNX has no
stable sort (``models.masking.stable_order``), and the PatchTST mask count is passed as
known for complementary masks instead of being read from the data.

``--config`` must agree with the checkpoint on the model (the scoring CLI's check).  The
sidecar (``<out>.json``) records the stream, the checkpoint and its sha256, the graph's
sha256, the window shape, the opset and the exporter versions; ONNX scoring refuses a
graph whose sidecar names another checkpoint.  Exit 0 on success; one line and exit 2 for
a bad checkpoint or config.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxscript
import torch
from torch import nn

import streams
from core.cli import run_main
from core.errors import CheckpointError
from core.io import atomic_write_bytes, atomic_write_json, file_sha256
from core.paths import display_path, resolve_path
from inference.checkpoint_io import Trained, check_config_matches, load_trained
from inference.onnx_scoring import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxScoringGraph,
    default_graph_path,
    sidecar_path,
)

ONNX_OPSET = 18  # well covered by onnxruntime 1.32 and the torch 2.14 exporter
EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so the example batch is 2


class ScoringGraph(nn.Module):
    """The part of ``infer_score`` that runs the model: windows -> basis errors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.model.scoring_errors(windows).float().mean(dim=-1)


def window_shape(trained: Trained) -> tuple[int, ...]:
    """One window's shape (no batch axis), as the stream's scoring dataset yields it."""
    model = trained.model
    if trained.stream == "patchtst":
        return (model.seq_len, len(trained.model_meta["channels"]))
    if trained.stream == "swinmae":
        return (model.in_chans, model.img_size, model.img_size)
    raise CheckpointError(f"{trained.ckpt_info['path']}: no ONNX export for stream "
                          f"{trained.stream!r}")


def export_graph(trained: Trained, out: Path) -> dict[str, Any]:
    """Write ``out`` and its sidecar for ``trained`` (on CPU, float32); return the sidecar."""
    shape = window_shape(trained)
    graph = ScoringGraph(trained.model.cpu().eval()).eval()
    example = torch.randn(EXAMPLE_BATCH, *shape, generator=torch.Generator().manual_seed(0))
    program = torch.onnx.export(
        graph, (example,), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    atomic_write_bytes(out, program.model_proto.SerializeToString())
    meta = {
        "stream": trained.stream,
        "checkpoint": trained.ckpt_info["path"],
        "checkpoint_sha256": trained.ckpt_info["sha256"],
        "onnx_sha256": file_sha256(out),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": list(shape),
        "opset": ONNX_OPSET,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxscript": onnxscript.__version__},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(sidecar_path(out), meta)
    return meta


def example_parity(trained: Trained, out: Path) -> float:
    """Max abs difference of ONNX Runtime vs PyTorch basis on a random batch of 3 windows."""
    x = torch.randn(3, *window_shape(trained), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = ScoringGraph(trained.model).eval()(x).numpy()
    got = OnnxScoringGraph(out, trained).basis(x)
    return float(np.abs(got - ref).max())


def _load(args: argparse.Namespace) -> Trained:
    """The checkpoint, with ``--config`` (when given) checked against it."""
    trained = load_trained(args.checkpoint, expected_stream=args.stream)
    if args.config:
        cfg = streams.load_config(args.config, args.overrides, stream=trained.stream)
        check_config_matches(trained, cfg, display_path(args.config))
    return trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.export_onnx",
        description="Export a checkpoint's deterministic scoring graph (windows -> basis "
        f"errors, complementary masks inside, dynamic batch, opset {ONNX_OPSET}) to ONNX, "
        "with a JSON sidecar that ties it to the checkpoint.",
    )
    parser.add_argument("--stream", choices=streams.names(),
                        help="refuse a checkpoint of another stream (default: any)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint path (repo-relative)")
    parser.add_argument("--config", default=None,
                        help="stream config YAML (repo-relative); refused unless it matches the "
                        "checkpoint on the model (default: no check, the checkpoint's own)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", default=None,
                        help="ONNX file (repo-relative; default "
                        f"{default_graph_path('<stream>')}); the sidecar is written next to it "
                        "as .json")
    args = parser.parse_args(argv)

    trained = _load(args)
    for name in ("onnxscript", "onnx_ir"):  # the optimiser's constant-folding chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    out = resolve_path(args.out or default_graph_path(trained.stream))
    meta = export_graph(trained, out)
    diff = example_parity(trained, out)
    shape = ", ".join(str(n) for n in meta["input_shape"])
    print(f"exported {trained.stream} scoring graph of {meta['checkpoint']}: {display_path(out)} "
          f"(opset {ONNX_OPSET}, input (batch, {shape}))")
    print(f"sidecar: {display_path(sidecar_path(out))}")
    print(f"ONNX Runtime vs PyTorch on an example batch: max abs diff {diff:.3g}")
    return 0


if __name__ == "__main__":
    run_main(main)
