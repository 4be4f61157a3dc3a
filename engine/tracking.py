"""MLflow glue: experiment tracking of training runs and the model registry.

Optional at run time: nothing here imports MLflow until a config turns tracking on (or a
``models:/`` URI, a promotion or a tracked checkpoint's results need it); without MLflow
installed that is one line saying how to install it.  The default store is a local SQLite
file, ``mlruns/mlflow.db``, with artifacts under ``mlruns/artifacts/`` (the model registry
needs a database-backed store; no server).  ``tracking.uri`` or ``$MLFLOW_TRACKING_URI``
point it at a team server instead.

A run's reference (``run_id``, ``experiment_id``, ``uri``) is stored inside every
checkpoint the run writes (key ``tracking``), so resume continues the run, calibration and
validation attach their results to it and a promotion registers its logged model.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import streams
from core.config import StreamConfig, effective_config
from core.errors import UserError
from core.io import file_sha256
from core.layout import RunLayout
from core.paths import display_path, resolve_path

LOCAL_DIR = "mlruns"
LOCAL_DB = f"{LOCAL_DIR}/mlflow.db"
LOCAL_ARTIFACTS = f"{LOCAL_DIR}/artifacts"
INSTALL = "pip install mlflow-skinny==3.18.0 (pinned in requirements.txt)"
MODEL_DIR = "model"  # the run's artifact folder that a registered version points at
FLAVOR = "ssl_anomaly"  # MLmodel flavor: our checkpoint, loaded by inference.checkpoint_io
SHA_TAG = "ssl.checkpoint_sha256"
RUN_ID_TAG = "ssl.run_id"
EPOCH_METRICS = ("train_loss", "val_loss", "lr", "seconds")

Ref = dict[str, Any]  # {"run_id", "experiment_id", "uri"}: where a checkpoint's run lives


def import_mlflow() -> Any:
    """The mlflow module, or one line saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise UserError(f"MLflow tracking is on but MLflow is not installed: {INSTALL}, or "
                        "set tracking.enabled=false") from None
    return mlflow


def store_uri(configured: str | None = None) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else the repository's local store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def local_uri() -> str:
    return f"sqlite:///{resolve_path(LOCAL_DB)}"


def shown_uri(uri: str) -> str:
    """A local store shown repository-relative (messages stay short)."""
    return f"sqlite:///{display_path(resolve_path(LOCAL_DB))}" if uri == local_uri() else uri


def client(uri: str) -> Any:
    """An MlflowClient on ``uri`` (tracking and registry); the local folder is created."""
    mlflow = import_mlflow()
    if uri == local_uri():
        resolve_path(LOCAL_ARTIFACTS).mkdir(parents=True, exist_ok=True)
    with store_call(uri, "opening the store"):
        return mlflow.MlflowClient(tracking_uri=uri)


def store_errors() -> tuple[type[BaseException], ...]:
    """What a store that is down or refuses raises (OSError covers HTTP connection errors)."""
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError)


@contextmanager
def store_call(uri: str, what: str) -> Iterator[None]:
    """Turn a store failure into one line naming the store and what was being done."""
    try:
        yield
    except store_errors() as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"MLflow store {shown_uri(uri)}: {what} failed ({first})") from None


def ref_client(ref: Ref) -> tuple[Any, str]:
    uri = store_uri(ref.get("uri"))
    return client(uri), uri


# --------------------------------------------------------------------------- training runs
def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys -> text values (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def config_key_of(cfg: StreamConfig, path: str) -> str | None:
    """The dotted config key whose value is ``path`` (e.g. ``data.scaler_path``)."""
    matches = [k for k, v in flat_params(effective_config(cfg)).items() if v == path]
    return matches[0] if matches else None


def _experiment_id(mlc: Any, name: str, uri: str) -> str:
    found = mlc.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            raise UserError(f"MLflow store {shown_uri(uri)}: experiment {name!r} is deleted; "
                            "restore it or set tracking.experiment to another name")
        return found.experiment_id
    location = resolve_path(LOCAL_ARTIFACTS).as_uri() if uri == local_uri() else None
    return mlc.create_experiment(name, artifact_location=location)


@dataclass
class RunTracker:
    """One training run's MLflow run, written by rank 0: the effective config as params
    at the start, the losses and learning rate per epoch, and at the end the loss curve,
    history, config and the model (checkpoint, stream artifacts, signature).

    A failure after the start warns once and stops tracking: the training goes on."""

    mlc: Any
    ref: Ref
    logged_epochs: int = 0
    broken: bool = False

    @classmethod
    def start(cls, cfg: StreamConfig, run_id: str, resume_ref: Ref | None) -> RunTracker:
        """A new run, or with ``resume_ref`` (from the checkpoint) the same run continued."""
        uri = store_uri(cfg.tracking.uri)
        mlc = client(uri)
        with store_call(uri, f"starting a run in experiment {cfg.tracking.experiment!r}"):
            old = _existing_run(mlc, resume_ref, uri)
            if old is not None:
                return cls._continue(mlc, old, cfg, resume_ref)
            exp = _experiment_id(mlc, cfg.tracking.experiment, uri)
            run = mlc.create_run(exp, run_name=f"{cfg.stream}-{run_id}",
                                 tags={"ssl.stream": cfg.stream, RUN_ID_TAG: run_id})
            params = flat_params(effective_config(cfg))
            _log_params(mlc, run.info.run_id, params)
        ref = {"run_id": run.info.run_id, "experiment_id": exp,
               "uri": None if uri == local_uri() else uri}
        return cls(mlc, ref)

    @classmethod
    def _continue(cls, mlc: Any, run: Any, cfg: StreamConfig, ref: Ref) -> RunTracker:
        """Resume: new params are added, changed ones recorded as ``resumed.<key>`` tags
        (MLflow params cannot change), and epochs already logged are not logged again."""
        run_id = run.info.run_id
        params = flat_params(effective_config(cfg))
        new = {k: v for k, v in params.items() if k not in run.data.params}
        changed = {f"resumed.{k}": v for k, v in params.items()
                   if k in run.data.params and run.data.params[k] != v}
        _log_params(mlc, run_id, new)
        for key, value in changed.items():
            mlc.set_tag(run_id, key, value)
        mlc.update_run(run_id, status="RUNNING")
        done = [int(m.step) for m in mlc.get_metric_history(run_id, "train_loss")]
        return cls(mlc, dict(ref), logged_epochs=max(done, default=0))

    def _safely(self, what: str, fn: Any, *args: Any) -> None:
        if self.broken:
            return
        try:
            fn(*args)
        except store_errors() as exc:
            self.broken = True
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            print(f"WARNING: MLflow {what} failed ({first}); tracking stops for this run, "
                  "training goes on")

    def log_epochs(self, history: list[dict[str, Any]]) -> None:
        """Every finished epoch of ``history`` not logged yet (step = epoch)."""
        self._safely("epoch metrics", self._log_epochs, history)

    def _log_epochs(self, history: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        rows = [r for r in history if int(r["epoch"]) > self.logged_epochs]
        metrics = [Metric(key, float(r[key]), _now_ms(), int(r["epoch"]))
                   for r in rows for key in EPOCH_METRICS if math.isfinite(float(r[key]))]
        if metrics:
            self.mlc.log_batch(self.ref["run_id"], metrics=metrics)
        if rows:
            self.logged_epochs = int(rows[-1]["epoch"])

    def finish(self, cfg: StreamConfig, paths: RunLayout, best_val_loss: float,
               signature: Any) -> None:
        """The run's outputs: loss curve and history, the config and the model."""
        self._safely("logging the run's artifacts", self._finish, cfg, paths, best_val_loss,
                     signature)

    def _finish(self, cfg: StreamConfig, paths: RunLayout, best_val_loss: float,
                signature: Any) -> None:
        run_id = self.ref["run_id"]
        for path in (paths.curve_png, paths.history_csv):
            self.mlc.log_artifact(run_id, str(path), "loss")
        self.mlc.log_artifact(run_id, str(paths.config_yaml), "config")
        if math.isfinite(best_val_loss):
            self.mlc.log_metric(run_id, "best_val_loss", best_val_loss)
        with tempfile.TemporaryDirectory() as tmp:
            sha = write_model_dir(Path(tmp), cfg, paths.checkpoint, run_id, signature)
            self.mlc.log_artifacts(run_id, tmp, MODEL_DIR)
        self.mlc.set_tag(run_id, SHA_TAG, sha)

    def end(self, status: str) -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self._safely("ending the run", self.mlc.set_terminated, self.ref["run_id"], status)


def _existing_run(mlc: Any, ref: Ref | None, uri: str) -> Any:
    """The run a resumed checkpoint names, when this store has it (else None: a new run)."""
    if not ref or not ref.get("run_id") or store_uri(ref.get("uri")) != uri:
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = mlc.get_run(ref["run_id"])
    except MlflowException as exc:
        if not _missing(exc):
            raise
        print(f"MLflow run {ref['run_id']} not found in {shown_uri(uri)}: starting a new run")
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _log_params(mlc: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):  # the store's batch limit
        mlc.log_batch(run_id, params=items[i:i + 100])


def _now_ms() -> int:
    return int(time.time() * 1000)


def infer_signature(inputs: Any, outputs: Any) -> Any:
    """The model's input/output schema from a sample batch (numpy arrays)."""
    from mlflow.models import infer_signature as infer

    return infer(inputs, outputs)


def write_model_dir(folder: Path, cfg: StreamConfig, checkpoint: Path, run_id: str,
                    signature: Any) -> str:
    """An MLflow model folder: the checkpoint, the stream's extra artifacts (the FDC scaler)
    and an ``MLmodel`` file with the signature and our flavor, which names each artifact's
    config key so a registered version scores with its own files.  Returns the checkpoint's
    sha256.  Not ``mlflow.pytorch.log_model``: that pickles the module, and loading it would
    unpickle code; our checkpoint loads with ``torch.load(weights_only=True)``."""
    from mlflow.models import Model

    shutil.copy2(checkpoint, folder / checkpoint.name)
    sha = file_sha256(folder / checkpoint.name)
    artifacts = {}
    for path, kind in streams.get(cfg.stream).extra_artifacts(cfg):
        source = resolve_path(path)
        if not source.is_file():  # a build that does not write it (test streams)
            continue
        shutil.copy2(source, folder / source.name)
        artifacts[kind] = {"file": source.name, "config_key": config_key_of(cfg, path),
                           "sha256": file_sha256(source)}
    model = Model(artifact_path=MODEL_DIR, run_id=run_id, signature=signature,
                  metadata={"stream": cfg.stream})
    model.add_flavor(FLAVOR, checkpoint=checkpoint.name, sha256=sha, stream=cfg.stream,
                     artifacts=artifacts,
                     loader="inference.checkpoint_io.load_trained (torch weights_only)")
    model.save(str(folder / "MLmodel"))
    return sha


# --------------------------------------------------------------------------- results
def attach_results(ref: Ref | None, dicts: dict[str, dict[str, Any]],
                   metrics: dict[str, float], tags: dict[str, str] | None = None) -> None:
    """Attach results (JSON artifacts, metrics, tags) to the run a checkpoint was trained
    in; nothing when it was not tracked.  A failure is a warning: the results are on disk."""
    if not ref or not ref.get("run_id"):
        return
    try:
        mlc, uri = ref_client(ref)
        with store_call(uri, f"attaching {', '.join(dicts) or 'results'} to run "
                             f"{ref['run_id']}"):
            run_id = ref["run_id"]
            for name, data in dicts.items():
                mlc.log_dict(run_id, data, name)
            for key, value in metrics.items():
                if value is not None and math.isfinite(float(value)):
                    mlc.log_metric(run_id, key, float(value))
            for key, value in (tags or {}).items():
                mlc.set_tag(run_id, key, value)
    except UserError as exc:
        print(f"WARNING: {exc}")


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Downloaded:
    """A registered model version on local disk (``artifacts/registry/<name>/v<n>/``)."""

    name: str
    version: str
    folder: Path
    checkpoint: Path
    sha256: str
    files: dict[str, Path]  # config key -> the registered artifact (e.g. data.scaler_path)
    run_id: str


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> name, alias, version."""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias:
            return name, alias, None
    else:
        name, _, version = rest.partition("/")
        if name and version.isdigit():
            return name, None, version
    raise UserError(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")


def model_version(mlc: Any, uri: str, store: str) -> Any:
    """The registered version a ``models:/`` URI names (one line when there is none)."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_models_uri(uri)
    try:
        if alias:
            return mlc.get_model_version_by_alias(name, alias)
        return mlc.get_model_version(name, version)
    except MlflowException as exc:
        # an unknown alias of a known model is INVALID_PARAMETER_VALUE in MLflow 3
        if not (_missing(exc) or (alias and exc.error_code == "INVALID_PARAMETER_VALUE")):
            raise
    raise UserError(f"{uri}: no such registered model version in {shown_uri(store)} "
                    "(promote one with python -m pipelines.promote, or set "
                    "MLFLOW_TRACKING_URI to the store that holds it)")


def download_version(uri: str, cache_dir: Path) -> Downloaded:
    """Fetch a registered version's model folder into ``cache_dir`` once, and check the
    checkpoint and its artifacts against the sha256 recorded at registration."""
    store = store_uri()
    mlc = client(store)
    with store_call(store, f"resolving {uri}"):
        mv = model_version(mlc, uri, store)
        folder = cache_dir / mv.name / f"v{mv.version}"
        if not _cached(folder, mv):
            _download(mlc, mv, folder)
    flavor = read_flavor(folder, uri)
    got = _verified(folder, flavor, mv.tags.get(SHA_TAG), uri)
    files = {a["config_key"]: folder / a["file"] for a in flavor.get("artifacts", {}).values()
             if a.get("config_key")}
    return Downloaded(mv.name, str(mv.version), folder, folder / flavor["checkpoint"], got,
                      files, mv.run_id)


def _cached(folder: Path, mv: Any) -> bool:
    try:
        flavor = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))["flavors"]
        ckpt = folder / flavor[FLAVOR]["checkpoint"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return False
    return ckpt.is_file() and file_sha256(ckpt) == mv.tags.get(SHA_TAG)


def _download(mlc: Any, mv: Any, folder: Path) -> None:
    """Download into a temporary folder beside the cache, then move it into place."""
    if not mv.run_id:
        raise UserError(f"models:/{mv.name}/{mv.version}: the version names no run")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        got = Path(mlc.download_artifacts(mv.run_id, MODEL_DIR, str(tmp)))
        if not _cached(folder, mv):  # another process may have filled the cache meanwhile
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(got, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_flavor(folder: Path, uri: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        flavor = data["flavors"][FLAVOR]
        flavor["checkpoint"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        raise UserError(f"{uri}: the registered model is not one of this project's "
                        f"(no {FLAVOR} flavor in its MLmodel)") from None
    return flavor


def _verified(folder: Path, flavor: dict[str, Any], registered: str | None, uri: str) -> str:
    sha = file_sha256(folder / flavor["checkpoint"])
    if sha != registered or sha != flavor.get("sha256"):
        raise UserError(f"{uri}: the downloaded checkpoint's sha256 ({sha[:12]}) is not the "
                        f"registered one ({str(registered)[:12]})")
    for kind, art in flavor.get("artifacts", {}).items():
        path = folder / art["file"]
        if not path.is_file() or file_sha256(path) != art.get("sha256"):
            raise UserError(f"{uri}: the registered {kind} ({art['file']}) is missing or "
                            "changed")
    return sha
