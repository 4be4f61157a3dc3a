"""ONNX export of both streams' scoring graphs: parity with PyTorch on ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import run_main
from core.errors import CheckpointError
from inference.checkpoint_io import Trained, load_trained
from inference.export_onnx import ONNX_OPSET
from inference.export_onnx import main as export_main
from inference.onnx_scoring import OnnxScoringGraph, onnx_infer_score, sidecar_path
from inference.scoring import infer_score
from models.masking import stable_order
from streams import load_config
from tests.conftest import ONNX_CHECKPOINTS as CKPT
from tests.conftest import ONNX_CONFIGS as CONFIG
from tests.test_scoring import _fdc_batch


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run_main(export_main, argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def _vib_windows(root: Path, trained: Trained) -> torch.Tensor:
    """Real scalogram windows of the calibration vibration file."""
    cfg = load_config(root / CONFIG["swinmae"])
    files = [root / "data/local/calib/vib/calib_0.csv"]
    data = trained.task.prepare_scoring(cfg, trained.model_meta, files, trained.device)
    return torch.stack([data.dataset[i] for i in range(10)])


def _assert_parity(batch: torch.Tensor, trained: Trained, graph: OnnxScoringGraph,
                   aggregation: str) -> None:
    layout = trained.task.score_layout(trained.cfg)
    kw = {"aggregation": aggregation, "top_k": 2, "layout": layout}
    ref_scores, ref = infer_score(batch, trained.model, trained.task, **kw)
    scores, aux = onnx_infer_score(batch, graph, trained.task, **kw)
    scale = float(np.abs(ref["basis"]).max())
    close = {"rtol": 1e-4, "atol": 1e-4 * scale}
    np.testing.assert_allclose(scores, ref_scores, **close)
    assert set(aux) == set(ref)
    for key, value in ref.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            np.testing.assert_allclose(aux[key], value, **close, err_msg=key)
        else:
            assert list(aux[key]) == list(value), key


@pytest.mark.parametrize("stream", ["patchtst", "swinmae"])
def test_onnx_scores_equal_pytorch_for_two_batch_sizes(
    stream: str, root: Path, onnx_graphs: dict[str, Path]
) -> None:
    out = onnx_graphs[stream]
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["opset"] == ONNX_OPSET and meta["stream"] == stream
    trained = load_trained(root / CKPT[stream])
    graph = OnnxScoringGraph(out, trained, threads=1)
    windows = _fdc_batch(root, n=8) if stream == "patchtst" else _vib_windows(root, trained)
    for size, aggregation in ((len(windows), "mean"), (3, "topk")):
        _assert_parity(windows[:size], trained, graph, aggregation)


def test_export_refuses_a_config_that_does_not_match(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad.onnx"
    code, _, err = _cli(["--stream", "patchtst", "--checkpoint", CKPT["patchtst"], "--config",
                         CONFIG["patchtst"], "--set", "model.d_model=32", "--out", str(out)],
                        capsys)
    assert code == 2
    assert "does not match the checkpoint" in err and "model.d_model" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_graph_is_refused_for_another_checkpoint(
    root: Path, tmp_path: Path, onnx_graphs: dict[str, Path]
) -> None:
    out = onnx_graphs["patchtst"]
    ckpt = torch.load(root / CKPT["patchtst"], weights_only=True)
    ckpt["epoch"] = 99  # same weights, another checkpoint file
    torch.save(ckpt, tmp_path / "other.pt")
    for trained, message in ((load_trained(tmp_path / "other.pt"), "sha256 differs"),
                             (load_trained(root / CKPT["swinmae"]), "stream 'patchtst'")):
        with pytest.raises(CheckpointError, match=message) as info:
            OnnxScoringGraph(out, trained)
        assert "\n" not in str(info.value)


def test_stable_order_is_a_stable_argsort() -> None:
    """The exportable sort the models use gives exactly the stable argsort (eager unchanged)."""
    keys = torch.randint(0, 3, (5, 40), generator=torch.Generator().manual_seed(0))
    assert torch.equal(stable_order(keys), torch.argsort(keys, dim=-1, stable=True))
    assert torch.equal(stable_order(keys > 1), torch.argsort(keys > 1, dim=-1, stable=True))
