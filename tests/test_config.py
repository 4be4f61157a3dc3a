"""Config loader: schema checks, one clear line per error, overrides, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import DEFAULT_EXCLUDE_COLUMNS, apply_overrides, effective_config, override_arg
from core.errors import ConfigError
from core.paths import resolve_path
from streams import config_from_dict, load_config
from streams.patchtst import PatchTSTConfig
from streams.swinmae import SwinMAEConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*_ssl*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.stream in ("patchtst", "swinmae")
    assert cfg.logging.checkpoint_path == f"checkpoints/{cfg.stream}_ssl.pt"
    assert cfg.logging.log_dir == f"runs/{cfg.stream}_ssl"
    assert not Path(cfg.logging.log_dir).is_absolute()


@pytest.mark.parametrize("name", ["patchtst_ssl_local.yaml", "swinmae_ssl_local.yaml"])
def test_local_configs_carry_seed_fields(name: str) -> None:
    cfg = load_config(f"configs/{name}")
    sub = "fdc" if cfg.stream == "patchtst" else "vib"
    assert cfg.device.prefer_cuda is True and cfg.device.amp is True
    assert cfg.data.source == "files"
    assert cfg.data.path and all(p.startswith(f"data/local/train/{sub}/*.") for p in cfg.data.path)
    assert cfg.dqvl.report_dir == f"artifacts/dqvl/{sub}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"training": {"lr": -1}}, "training.lr: input should be greater than 0, got -1"),
        ({"training": {"epochs": "ten"}}, "training.epochs: input should be a valid integer"),
        ({"training": {"lrate": 0.1}},
         "training.lrate: unknown key (allowed: batch_size, early_stop_patience, epochs"),
        ({"model": {"mask_ratio": 1.5}}, "model.mask_ratio: input should be less than 1, got 1.5"),
        ({"device": {"amp": "maybe"}}, "device.amp: input should be a valid boolean"),
        ({"data": {"seq_len": 30}}, "data.seq_len (30) must be a multiple of model.patch_len"),
    ],
)
def test_bad_values_give_one_clear_line(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"stream": "patchtst", **raw})
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stream: patchtst\ntraining: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)


def test_stream_mismatch_is_an_error() -> None:
    with pytest.raises(ConfigError, match="stream: expected 'swinmae', got 'patchtst'"):
        load_config("configs/patchtst_ssl.yaml", stream="swinmae")


def test_overrides_are_yaml_typed_and_validated() -> None:
    cfg = load_config(
        "configs/swinmae_ssl.yaml",
        ["training.epochs=3", "model.depths=[1,1]", "device.amp=false", "data.fs=4000"],
    )
    assert isinstance(cfg, SwinMAEConfig)
    assert cfg.training.epochs == 3 and cfg.model.depths == [1, 1]
    assert cfg.device.amp is False and cfg.data.fs == 4000.0
    with pytest.raises(ConfigError, match="training.nope: unknown key"):
        load_config("configs/swinmae_ssl.yaml", ["training.nope=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, ["training.epochs"])


def test_paths_resolve_against_repo_root_not_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config("configs/patchtst_ssl.yaml")  # found although cwd is elsewhere
    assert resolve_path(cfg.logging.checkpoint_path) == REPO / "checkpoints/patchtst_ssl.pt"
    monkeypatch.setenv("SSL_REPO_ROOT", str(tmp_path))
    assert resolve_path("runs/x") == tmp_path / "runs/x"


def test_effective_config_round_trips() -> None:
    cfg = load_config("configs/patchtst_ssl.yaml", ["model.d_model=32"])
    again = config_from_dict(effective_config(cfg))
    assert isinstance(again, PatchTSTConfig) and again == cfg


def test_a_value_with_colon_space_gets_a_quoting_hint() -> None:
    """``--set data.timestamp_col=Time: UTC``: YAML reads a mapping, the user meant text."""
    with pytest.raises(ConfigError) as err:
        load_config("configs/patchtst_ssl.yaml", ["data.timestamp_col=Time: UTC"])
    assert str(err.value).endswith(
        "data.timestamp_col: input should be a valid string; YAML reads a value with ': ' "
        "as a mapping; quote it: --set 'data.timestamp_col=\"Time: UTC\"'"
    )
    with pytest.raises(ConfigError, match=r"quote it: --set 'data.timestamp_col=\"a: b: c\"'"):
        load_config("configs/patchtst_ssl.yaml", ["data.timestamp_col=a: b: c"])  # bad YAML
    cfg = load_config("configs/patchtst_ssl.yaml", ['data.timestamp_col="Time: UTC"'])
    assert isinstance(cfg, PatchTSTConfig) and cfg.data.timestamp_col == "Time: UTC"
    assert override_arg("data.timestamp_col", "ts") == "--set data.timestamp_col=ts"
    spaced = override_arg("data.timestamp_col", "Zeit (UTC)")
    assert spaced == "--set 'data.timestamp_col=Zeit (UTC)'"


def test_fdc_column_exclusion_keys() -> None:
    cfg = load_config("configs/patchtst_ssl.yaml")
    assert isinstance(cfg, PatchTSTConfig)
    assert cfg.data.exclude_columns == DEFAULT_EXCLUDE_COLUMNS and cfg.data.exclude_counters
    assert cfg.data.scale_clip == 20.0
    for off in ("data.exclude_columns=", "data.exclude_columns=null", 'data.exclude_columns=""'):
        assert load_config("configs/patchtst_ssl.yaml", [off]).data.exclude_columns is None
    with pytest.raises(ConfigError, match=r"data.exclude_columns: invalid regular expression"):
        load_config("configs/patchtst_ssl.yaml", ["data.exclude_columns=(label"])
