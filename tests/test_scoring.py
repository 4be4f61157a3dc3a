"""Scoring: deterministic scores, breakdowns, safe checkpoint loading, the scoring CLI.

Tiny checkpoints of both streams are trained once per session (engine.trainer.fit, one or
two short epochs) in a temporary repository root with small demo-like files; the
calibration/decision tests reuse them through :func:`tiny_models`.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import streams
from core.errors import CheckpointError, DataError
from inference.checkpoint_io import check_config_matches, load_trained
from inference.run_scoring_example import main as scoring_main
from inference.scoring import aggregate, infer_score, score_files
from sensor_data.synthetic_fdc import make_fdc_frame
from sensor_data.synthetic_vib import make_vibration, vibration_csv_bytes
from streams import load_config
from streams.patchtst import load_scaler

REPO = Path(__file__).resolve().parents[1]
FDC_START_S = 1_704_067_200  # 2024-01-01T00:00:00Z, the synthetic FDC start time
N_CHANNELS = 6

PATCH_CFG = {
    "stream": "patchtst",
    "seed": 0,
    "device": {"prefer_cuda": False, "amp": False},
    "data": {"source": "files", "path": "data/local/train/fdc/*.csv", "seq_len": 16,
             "stride": 4, "val_fraction": 0.2},
    "model": {"patch_len": 4, "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32,
              "mask_ratio": 0.4},
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.003, "warmup_epochs": 0,
                 "max_steps_per_epoch": 12},
    "scoring": {"aggregation": "mean", "batch_size": 32},
    "logging": {"log_dir": "runs/patchtst_ssl", "checkpoint_path": "checkpoints/patchtst_ssl.pt"},
}
SWIN_CFG = {
    "stream": "swinmae",
    "seed": 0,
    "device": {"prefer_cuda": False, "amp": False},
    "data": {"source": "files", "path": "data/local/train/vib/*.csv", "fs": 1000.0,
             "win_sec": 0.5, "win_stride_sec": 0.5, "val_fraction": 0.2},
    "cwt": {"freq_min": 10.0, "freq_max": 400.0, "n_freqs": 16},
    "image": {"size": 32},
    "model": {"patch_size": 4, "window_size": 4, "embed_dim": 16, "depths": [1, 1],
              "num_heads": [1, 2], "decoder_dim": 16, "mask_ratio": 0.5},
    "training": {"epochs": 1, "batch_size": 8, "lr": 0.003, "warmup_epochs": 0,
                 "max_steps_per_epoch": 4},
    "scoring": {"aggregation": "mean", "batch_size": 16},
    "logging": {"log_dir": "runs/swinmae_ssl", "checkpoint_path": "checkpoints/swinmae_ssl.pt"},
}


@dataclass(frozen=True)
class TinyModels:
    root: Path
    patch_config: Path
    swin_config: Path
    patch_ckpt: Path
    swin_ckpt: Path


@functools.cache
def fdc_machine(n_rows: int = 1700, seed: int = 0) -> pd.DataFrame:
    """One synthetic machine (a seed fixes the channels' offsets and units), 1 s period."""
    frame = make_fdc_frame(n_rows, N_CHANNELS, seed)
    frame["timestamp"] = pd.to_datetime(FDC_START_S + np.arange(n_rows), unit="s")
    return frame


def write_fdc(path: Path, rows: slice, step_channel: str | None = None) -> Path:
    """Rows of :func:`fdc_machine` as a CSV; ``step_channel`` gets a large step halfway."""
    frame = fdc_machine().iloc[rows].reset_index(drop=True)
    if step_channel is not None:
        col = frame[step_channel]
        frame.loc[len(frame) // 2 :, step_channel] = col.iloc[len(frame) // 2 :] + 8 * col.std()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_vib(path: Path, seconds: float, seed: int, fault: str | None = None,
              start_s: float = 0.0) -> Path:
    values = make_vibration(seconds, 1000.0, seed, fault=fault)
    text = vibration_csv_bytes(values, 1000.0, with_timestamp=False).decode()
    stamps = start_s + np.arange(len(values)) / 1000.0
    lines = text.strip().splitlines()
    body = [f"{row},{t:.3f}" for row, t in zip(lines[1:], stamps, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([lines[0] + ",timestamp", *body]) + "\n")
    return path


def _build(root: Path) -> TinyModels:
    from engine.trainer import fit

    data = root / "data" / "local"
    for i in range(2):
        write_fdc(data / "train" / "fdc" / f"train_{i}.csv", slice(400 * i, 400 * (i + 1)))
        write_vib(data / "train" / "vib" / f"train_{i}.csv", 8.0, seed=i)
    write_fdc(data / "calib" / "fdc" / "calib_0.csv", slice(800, 1100))
    write_vib(data / "calib" / "vib" / "calib_0.csv", 15.0, seed=10)
    configs = root / "configs"
    configs.mkdir(parents=True)
    (configs / "patch.yaml").write_text(yaml.safe_dump(PATCH_CFG))
    (configs / "swin.yaml").write_text(yaml.safe_dump(SWIN_CFG))
    old = os.environ.get("SSL_REPO_ROOT")
    os.environ["SSL_REPO_ROOT"] = str(root)
    try:
        fit(load_config(configs / "patch.yaml", stream="patchtst"), run_id="t")
        fit(load_config(configs / "swin.yaml", stream="swinmae"), run_id="t")
    finally:
        if old is None:
            os.environ.pop("SSL_REPO_ROOT")
        else:
            os.environ["SSL_REPO_ROOT"] = old
    ckpts = root / "checkpoints"
    return TinyModels(root, configs / "patch.yaml", configs / "swin.yaml",
                      ckpts / "patchtst_ssl.pt", ckpts / "swinmae_ssl.pt")


_CACHE: dict[str, TinyModels] = {}


def tiny_models(factory: pytest.TempPathFactory) -> TinyModels:
    """Train the tiny checkpoints once per test session (shared by both scoring test files)."""
    if "models" not in _CACHE:
        _CACHE["models"] = _build(factory.mktemp("tiny_repo"))
    return _CACHE["models"]




FDC = streams.get("patchtst")


def _fdc_batch(root: Path, n: int = 8) -> torch.Tensor:
    """``n`` normalised normal windows of 16 rows (rows the model never trained on)."""
    trained = load_trained(root / "checkpoints" / "patchtst_ssl.pt")
    scaler = load_scaler(load_config(root / "configs" / "patch.yaml"), trained.model_meta)
    values = fdc_machine().iloc[1100 : 1100 + 16 * n, 1:].to_numpy()
    return torch.from_numpy(scaler.transform(values)).view(n, 16, N_CHANNELS)


# --------------------------------------------------------------------------- scoring stride
def test_time_stride_scores_equal_the_every_row_reference(root: Path, tmp_path: Path) -> None:
    """The fast path (a window every ``scoring.stride_sec``, large batches) gives the
    reference's scores and breakdowns (every row, small batches) at the same starts."""
    trained = load_trained(root / "checkpoints" / "patchtst_ssl.pt")
    config = root / "configs" / "patch.yaml"
    unit = write_fdc(tmp_path / "unit.csv", slice(1100, 1400))  # 300 rows, 1 s apart
    ref = score_files(trained, load_config(config, ["data.stride=1", "scoring.batch_size=7"]),
                      [unit], progress=False)
    fast = score_files(trained, load_config(config, ["scoring.stride_sec=3",
                                                     "scoring.batch_size=256"]),
                       [unit], progress=False)
    assert ref.starts.tolist() == list(range(285))
    # every 3 rows (3 s at 1 s), plus the window that ends at the last row
    assert fast.starts.tolist() == [*range(0, 285, 3), 284]
    assert fast.reports[0].metrics["scoring_stride_rows"] == 3
    np.testing.assert_allclose(fast.scores, ref.scores[fast.starts], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.aux["channel_errors"],
                               ref.aux["channel_errors"][fast.starts], rtol=1e-5, atol=1e-6)
    unchecked = score_files(trained, load_config(config, ["scoring.stride_sec=3",
                                                          "dqvl.enabled=false"]),
                            [unit], progress=False)  # the period comes from the stamps
    assert unchecked.starts.tolist() == fast.starts.tolist()
    # at most a quarter window (16 rows -> 4), so every row stays in >= 4 windows
    capped = score_files(trained, load_config(config, ["scoring.stride_sec=600"]), [unit],
                         progress=False)
    assert capped.starts.tolist() == list(range(0, 285, 4))


def test_time_stride_applies_to_vibration_windows(root: Path, tmp_path: Path) -> None:
    trained = load_trained(root / "checkpoints" / "swinmae_ssl.pt", expected_stream="swinmae")
    config = root / "configs" / "swin.yaml"
    path = write_vib(tmp_path / "vib.csv", 3.0, seed=3)
    every = score_files(trained, load_config(config), [path], progress=False)
    fine = score_files(trained, load_config(config, ["scoring.stride_sec=0.125"]), [path],
                       progress=False)
    assert np.diff(every.starts).tolist() == [500] * 5  # data.win_stride_sec 0.5 s at 1 kHz
    assert np.diff(fine.starts).tolist() == [125] * 20
    np.testing.assert_allclose(fine.scores[::4], every.scores, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- infer_score
def test_aggregate_modes() -> None:
    errors = torch.tensor([[1.0, 5.0, 3.0, 0.0]])
    assert aggregate(errors, "mean").item() == pytest.approx(2.25)
    assert aggregate(errors, "max").item() == 5.0
    assert aggregate(errors, "topk", top_k=2).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(errors, "median")


def test_fdc_scores_are_deterministic_and_aggregate_channels(root: Path) -> None:
    model = load_trained(root / "checkpoints" / "patchtst_ssl.pt").model
    batch = _fdc_batch(root)
    s1, aux1 = infer_score(batch, model, FDC)
    s2, aux2 = infer_score(batch.clone(), model, FDC)
    assert s1.shape == (8,)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(aux1["channel_errors"], aux2["channel_errors"])
    assert aux1["channel_errors"].shape == (8, N_CHANNELS)
    np.testing.assert_allclose(s1, aux1["channel_errors"].mean(axis=1), rtol=1e-5)
    s_max, _ = infer_score(batch, model, FDC, aggregation="max")
    np.testing.assert_allclose(s_max, aux1["channel_errors"].max(axis=1), rtol=1e-5)


def test_step_fault_makes_its_channel_the_top_contributor(root: Path) -> None:
    model = load_trained(root / "checkpoints" / "patchtst_ssl.pt").model
    batch = _fdc_batch(root)
    faulty = batch.clone()
    faulty[:, 8:, 3] += 10.0  # large step in channel 3 halfway through each window
    clean_scores, _ = infer_score(batch, model, FDC)
    scores, aux = infer_score(faulty, model, FDC)
    assert (np.argmax(aux["channel_errors"], axis=1) == 3).all()
    assert (scores > clean_scores).all()


def test_vibration_scores_axes_and_bands(root: Path) -> None:
    trained = load_trained(root / "checkpoints" / "swinmae_ssl.pt", expected_stream="swinmae")
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    bands = trained.task.score_layout(trained.cfg)
    s1, aux = infer_score(images, trained.model, trained.task, layout=bands)
    s2, _ = infer_score(images, trained.model, trained.task, layout=bands)
    np.testing.assert_array_equal(s1, s2)
    assert aux["axis_errors"].shape == (4, 3)
    np.testing.assert_allclose(s1, aux["axis_errors"].mean(axis=1), rtol=1e-5)
    edges = aux["band_edges_hz"]
    assert edges[0] == pytest.approx(10.0) and edges[-1] == pytest.approx(400.0)
    assert (np.diff(edges) > 0).all()
    assert aux["band_errors"].shape == (4, len(edges) - 1)
    assert aux["band_labels"][-1].endswith(" Hz") and aux["band_labels"][0].startswith("10-")
    # Every band mean is a mean over image rows, so the band errors bracket the pixel mean.
    pixel_mean = aux["axis_errors"].mean(axis=1)
    assert (aux["band_errors"].min(axis=1) <= pixel_mean + 1e-6).all()
    assert (aux["band_errors"].max(axis=1) >= pixel_mean - 1e-6).all()


# --------------------------------------------------------------------------- loading
def test_load_trained_rebuilds_models(root: Path) -> None:
    patch = load_trained(root / "checkpoints" / "patchtst_ssl.pt", expected_stream="patchtst")
    assert not patch.model.training
    assert patch.model_meta["channels"] == [f"ch_{i:02d}" for i in range(N_CHANNELS)]
    assert patch.ckpt_info["path"] == "checkpoints/patchtst_ssl.pt"
    assert len(patch.ckpt_info["sha256"]) == 64
    swin = load_trained("checkpoints/swinmae_ssl.pt")
    assert swin.stream == "swinmae" and swin.cfg.image.size == 32


def test_checkpoint_from_before_the_decoder_keys_loads_as_trained(
    root: Path, tmp_path: Path
) -> None:
    """Files written before ``model.decoder_mlp`` / ``decoder_kv_proj`` existed were trained
    with both on: they load that way, and a config with today's defaults is refused by name."""
    keys = ("model.decoder_kv_proj", "model.decoder_mlp")
    ckpt = torch.load(root / "checkpoints" / "patchtst_ssl.pt", weights_only=True)
    args = dict(ckpt["model_args"])
    assert [args.pop(key) for key in keys] == [False, False]  # today's defaults
    task = streams.get("patchtst")
    ckpt["model"] = task.build_model({**args, **dict.fromkeys(keys, True)},
                                     ckpt["model_meta"]).state_dict()
    ckpt["model_args"] = args
    for key in keys:
        del ckpt["config"]["model"][key.split(".")[1]]
    torch.save(ckpt, tmp_path / "old.pt")
    trained = load_trained(tmp_path / "old.pt")
    assert trained.model.decoder.ff is not None and trained.model.decoder.kv is not None
    assert all(trained.model_args[key] is True for key in keys)
    config = root / "configs" / "patch.yaml"
    with pytest.raises(CheckpointError) as info:
        check_config_matches(trained, load_config(config), "patch.yaml")
    assert all(f"{key}: checkpoint=True, config=False" in str(info.value) for key in keys)
    on = load_config(config, [f"{key}=true" for key in keys])
    check_config_matches(trained, on, "patch.yaml")
    del ckpt["model_args"]  # the oldest files: only the embedded config
    torch.save(ckpt, tmp_path / "older.pt")
    assert load_trained(tmp_path / "older.pt").model.decoder.kv is not None


def _bad_checkpoints(root: Path, tmp: Path) -> dict[str, tuple[Path, str, str | None]]:
    """name -> (file, expected message part, expected stream)."""
    good = (root / "checkpoints" / "patchtst_ssl.pt").read_bytes()
    (tmp / "half.pt").write_bytes(good[: len(good) // 2])
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "notes.pt").write_text("this is a text file, not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, tmp / "other_dict.pt")
    ckpt = torch.load(root / "checkpoints" / "patchtst_ssl.pt", weights_only=True)
    ckpt["config"]["model"]["d_model"] = 32
    ckpt["model_args"]["model.d_model"] = 32
    torch.save(ckpt, tmp / "wrong_weights.pt")
    return {
        "missing": (tmp / "nope.pt", "not found", None),
        "empty": (tmp / "empty.pt", "empty", None),
        "truncated": (tmp / "half.pt", "not a readable checkpoint", None),
        "text": (tmp / "notes.pt", "refused to load", None),
        "foreign dict": (tmp / "other_dict.pt", "not a checkpoint written by this project", None),
        "weights mismatch": (tmp / "wrong_weights.pt", "weights do not fit", None),
        "stream mismatch": (root / "checkpoints" / "patchtst_ssl.pt", "expected 'swinmae'",
                            "swinmae"),
    }


def test_load_trained_rejects_bad_checkpoints(root: Path, tmp_path: Path) -> None:
    for name, (path, message, stream) in _bad_checkpoints(root, tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_trained(path, expected_stream=stream)
        text = str(info.value)
        assert message in text, name
        assert path.name in text and "\n" not in text, name


def test_scaler_channels_must_match_checkpoint(root: Path, tmp_path: Path) -> None:
    import json

    trained = load_trained(root / "checkpoints" / "patchtst_ssl.pt")
    data = json.loads((root / "artifacts" / "scaler_fdc.json").read_text())
    data["channel_names"][0] = "renamed"
    (tmp_path / "scaler.json").write_text(json.dumps(data))
    cfg = load_config(root / "configs" / "patch.yaml", [f"data.scaler_path={tmp_path}/scaler.json"])
    with pytest.raises(DataError, match="ch_00.*renamed|renamed.*ch_00"):
        load_scaler(cfg, trained.model_meta)


# --------------------------------------------------------------------------- CLI
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from core.cli import run_main

    with pytest.raises(SystemExit) as info:
        run_main(scoring_main, argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_scoring_example_scores_both_streams(root: Path, capsys) -> None:
    code, out, _ = _cli(["--stream", "patchtst", "--checkpoint", "checkpoints/patchtst_ssl.pt",
                         "--config", "configs/patch.yaml", "--max-windows", "20"], capsys)
    assert code == 0
    assert "windows scored: 20" in out and "top channels" in out
    code, out, _ = _cli(["--stream", "swinmae", "--checkpoint", "checkpoints/swinmae_ssl.pt",
                         "--config", "configs/swin.yaml", "--data-path",
                         "data/local/calib/vib/*.csv", "--max-windows", "6"], capsys)
    assert code == 0
    assert "windows scored: 6" in out and "top axes" in out and "bands" in out


def test_scoring_example_synthetic_batch_without_files(root: Path, capsys) -> None:
    code, out, _ = _cli(["--stream", "patchtst", "--checkpoint", "checkpoints/patchtst_ssl.pt",
                         "--config", "configs/patch.yaml", "--set",
                         "data.path=data/none/*.csv", "--max-windows", "5"], capsys)
    assert code == 0 and "synthetic normal batch" in out and "windows scored: 5" in out
    code, out, _ = _cli(["--stream", "swinmae", "--checkpoint", "checkpoints/swinmae_ssl.pt",
                         "--config", "configs/swin.yaml", "--set", "data.source=synthetic",
                         "--max-windows", "3"], capsys)
    assert code == 0 and "synthetic normal batch" in out and "windows scored: 3" in out


def test_scoring_example_fails_cleanly(root: Path, tmp_path: Path, capsys) -> None:
    bad = _bad_checkpoints(root, tmp_path)
    other_channels = write_fdc(tmp_path / "other.csv", slice(1100, 1200))
    frame = pd.read_csv(other_channels).rename(columns={"ch_05": "extra_sensor"})
    frame.to_csv(other_channels, index=False)
    cases = [
        (["--stream", "patchtst", "--checkpoint", str(bad["truncated"][0]),
          "--config", "configs/patch.yaml"], "half.pt"),
        (["--stream", "swinmae", "--checkpoint", "checkpoints/patchtst_ssl.pt",
          "--config", "configs/swin.yaml"], "expected 'swinmae'"),
        (["--stream", "patchtst", "--checkpoint", "checkpoints/patchtst_ssl.pt",
          "--config", "configs/patch.yaml", "--data-path", str(other_channels)],
         "missing ch_05; extra extra_sensor"),
        (["--stream", "patchtst", "--checkpoint", "checkpoints/patchtst_ssl.pt",
          "--config", "configs/patch.yaml", "--set", "model.d_model=32"],
         "model.d_model: checkpoint=16, config=32"),
        (["--stream", "swinmae", "--checkpoint", "checkpoints/swinmae_ssl.pt",
          "--config", "configs/swin.yaml", "--set", "cwt.n_freqs=24"], "cwt.n_freqs"),
    ]
    for argv, message in cases:
        code, out, err = _cli(argv, capsys)
        assert code == 2, argv
        assert message in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_scoring_example_subprocess_truncated_checkpoint(root: Path, tmp_path: Path) -> None:
    good = (root / "checkpoints" / "patchtst_ssl.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 3])
    proc = subprocess.run(
        [sys.executable, "-m", "inference.run_scoring_example", "--stream", "patchtst",
         "--checkpoint", str(tmp_path / "cut.pt"), "--config", "configs/patch.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SSL_REPO_ROOT": str(root)},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "cut.pt" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
