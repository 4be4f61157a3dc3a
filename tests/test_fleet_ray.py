"""Fleet scoring on Ray: a real local Ray instance (2 workers) gives, file for file, the
outputs of the single-process path, also when a worker is killed in the middle of a run."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core.errors import ConfigError
from pipelines.fleet import load_manifest
from pipelines.run_fleet import main as fleet_main
from pipelines.run_local_test_pipeline import main as pipeline_main
from tests.test_backscore import EVENTFUL, outputs
from tests.test_scoring import FDC_START_S, write_fdc, write_vib

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]
UNITS = 4


def _fleet(root: Path) -> Path:
    """Four units with their own test files (normal, a step fault, long files that are
    scored in chunks); the last unit adds a vibration stream that overlaps in time."""
    units = {}
    for u in range(UNITS):
        test = root / "fleet_data" / f"unit_{u}"
        write_fdc(test / "fdc" / "normal.csv", slice(1100, 1300 + 40 * u))
        write_fdc(test / "fdc" / "long.csv", slice(0, 1700), step_channel=f"ch_0{u % 6}")
        write_fdc(test / "fdc" / "fault.csv", slice(1300, 1500), step_channel="ch_02")
        pd.DataFrame({"file": ["normal.csv", "fault.csv"], "label": ["normal", "fault"]}
                     ).to_csv(test / "fdc" / "labels.csv", index=False)
        entry = {"streams": {"patchtst": {
            "config": "configs/patch.yaml", "checkpoint": "checkpoints/patchtst_ssl.pt",
            "calibration_path": "data/local/calib/fdc/*.csv",
            "test_path": f"fleet_data/unit_{u}/fdc/*.csv"}},
            "thresholds": EVENTFUL, "calibration_dir": f"calibration/unit_{u}"}
        if u == UNITS - 1:
            write_vib(test / "vib" / "vib.csv", 12.0, seed=30, start_s=FDC_START_S + 1150)
            entry["streams"]["swinmae"] = {
                "config": "configs/swin.yaml", "checkpoint": "checkpoints/swinmae_ssl.pt",
                "calibration_path": "data/local/calib/vib/*.csv",
                "test_path": f"fleet_data/unit_{u}/vib/*.csv"}
        units[f"unit_{u}"] = entry
    path = root / "configs" / "fleet.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "artifacts/fleet", "units": units}))
    return path


@pytest.fixture(scope="module")
def fleet(tiny, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """A copy of the tiny models' repository with a fleet manifest, its single-process
    outputs, and one local Ray instance (2 CPUs) shared by the module's tests."""
    import shutil

    root = tmp_path_factory.mktemp("fleet") / "repo"
    shutil.copytree(tiny.root, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_REPO_ROOT", str(root))
        manifest = _fleet(root)
        assert fleet_main(["--manifest", str(manifest), "--out-dir", "out/local"]) == 0
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        try:
            yield manifest, outputs(root / "out" / "local")
        finally:
            ray.shutdown()


def test_ray_fleet_equals_single_process(fleet, capsys) -> None:
    manifest, expected = fleet
    root = manifest.parents[1]
    assert fleet_main(["--manifest", str(manifest), "--out-dir", "out/ray", "--engine", "ray",
                       "--workers", "2", "--chunk-windows", "40"]) == 0
    assert "ray: 2 worker(s) ready" in capsys.readouterr().out
    got = outputs(root / "out" / "ray")
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
    summary = pd.read_csv(root / "out" / "ray" / "summary.csv")
    assert sorted(summary["unit"].unique()) == [f"unit_{u}" for u in range(UNITS)]
    assert len(summary) == 3 * UNITS + 1 and summary["events"].sum() > 0
    assert set(summary["decision"]) >= {"anomaly", "normal"}
    # long.csv (422 windows at 32 per batch) came in chunks of 64 windows
    windows = pd.read_csv(root / "out" / "ray" / "unit_0" / "patchtst_windows.csv")
    assert (windows["file"] == "long.csv").sum() == 422


def test_killed_worker_still_gives_complete_unduplicated_output(fleet, monkeypatch) -> None:
    """SIGKILL of a worker process while it has pieces in flight: Ray restarts it and
    retries them; the driver merges each piece once, so the outputs are unchanged."""
    from pipelines.ray_pool import RayEngine

    manifest, expected = fleet
    root = manifest.parents[1]
    engines: list[RayEngine] = []
    killed: list[int] = []
    enter, wait = RayEngine.__enter__, ray.wait

    def remember(self: RayEngine) -> RayEngine:
        engines.append(self)
        return enter(self)

    def kill_then_wait(refs, **kwargs):
        if not killed:  # pieces are in flight on every worker now
            killed.append(engines[0].pids[0])
            os.kill(killed[0], signal.SIGKILL)
        return wait(refs, **kwargs)

    monkeypatch.setattr(RayEngine, "__enter__", remember)
    monkeypatch.setattr(ray, "wait", kill_then_wait)
    assert fleet_main(["--manifest", str(manifest), "--out-dir", "out/killed",
                       "--engine", "ray", "--workers", "2", "--chunk-windows", "40"]) == 0
    assert killed
    got = outputs(root / "out" / "killed")
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
    windows = pd.read_csv(root / "out" / "killed" / "unit_3" / "patchtst_windows.csv")
    assert not windows.duplicated(["file", "window"]).any()


def test_batch_cli_starts_its_own_local_ray(fleet) -> None:
    """``--engine ray`` with no address starts (and stops) a local instance in a fresh
    process; both streams and their fusion come out as in one process."""
    manifest, _ = fleet
    root = manifest.parents[1]
    unit = yaml.safe_load(manifest.read_text())["units"][f"unit_{UNITS - 1}"]
    config = root / "configs" / "decision_unit.yaml"
    config.write_text(yaml.safe_dump(unit))
    env = {**os.environ, "SSL_REPO_ROOT": str(root)}
    env.pop("RAY_ADDRESS", None)
    base = [sys.executable, "-m", "pipelines.run_local_test_pipeline", "--config", str(config)]
    for out, extra in (("out/cli_local", []), ("out/cli_ray", ["--engine", "ray",
                                                               "--workers", "2"])):
        done = subprocess.run([*base, "--out-dir", out, *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "ray: 2 worker(s) ready (local instance)" in done.stdout
    assert outputs(root / "out" / "cli_ray") == outputs(root / "out" / "cli_local")
    assert json.loads((root / "out" / "cli_ray" / "decisions.json").read_text())["fused"]


def test_without_ray_engine_ray_says_how_to_install(root: Path, tmp_path: Path,
                                                    monkeypatch) -> None:
    config = _write(tmp_path / "decision.yaml", {"streams": {"patchtst": {
        "config": "configs/patch.yaml", "checkpoint": "checkpoints/patchtst_ssl.pt",
        "calibration_path": "data/local/calib/fdc/*.csv", "test_path": "none/*.csv"}}})
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"needs Ray: .*pip install 'ray==2\.60\.0'"):
        pipeline_main(["--config", str(config), "--engine", "ray"])


def test_csv_manifest_names_the_same_units_as_yaml(root: Path, tmp_path: Path) -> None:
    row = {"stream": "patchtst", "config": "configs/patch.yaml",
           "checkpoint": "checkpoints/patchtst_ssl.pt",
           "calibration_path": "data/local/calib/fdc/*.csv", "test_path": "t/*.csv"}
    csv = tmp_path / "fleet.csv"
    pd.DataFrame([{"unit": "a", **row}, {"unit": "b", **row}]).to_csv(csv, index=False)
    body = {k: v for k, v in row.items() if k != "stream"}
    yml = tmp_path / "fleet.yaml"
    yml.write_text(yaml.safe_dump({"units": {u: {"streams": {"patchtst": body}}
                                             for u in "ab"}}))
    from_csv, out_csv = load_manifest(str(csv))
    from_yaml, out_yaml = load_manifest(str(yml))
    assert from_csv == from_yaml and out_csv == out_yaml == root / "artifacts" / "fleet"
    assert [u.layout.out_dir for u in from_csv] == [root / "artifacts/fleet/a",
                                                   root / "artifacts/fleet/b"]
    with pytest.raises(ConfigError, match="units.a b: a unit id is a folder name"):
        load_manifest(str(_write(tmp_path / "bad.yaml", {"units": {"a b": {}}})))


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
