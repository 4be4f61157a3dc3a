"""One-off generator for the four notebooks (run from the repository root)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()

STREAMS = {
    "patchtst": {
        "title": "PatchTST-SSL on FDC process data",
        "other": "swinmae",
        "data": "FDC files (CSV or Parquet, one timestamp column, numeric channels) under "
        "`data/local/train/fdc/`",
        "what": "masked patch reconstruction on multivariate process data: every channel is cut "
        "into patches, 40 % of the patches are hidden and a Transformer encoder learns to "
        "rebuild them from the rest",
        "prep": "reads every file matched by `data.path`, runs the DQVL gate on each file "
        "(a dropped file never stops the run), splits each kept file by time (train rows "
        "first, validation rows after), fits the robust scaler on the train rows only and "
        "saves it to `artifacts/scaler_fdc.json`, then cuts windows inside one file and one "
        "side of the split",
    },
    "swinmae": {
        "title": "Swin-MAE-SSL on 3-axis vibration scalograms",
        "other": "patchtst",
        "data": "3-axis vibration files (CSV with x, y, z columns or NPY of shape (T, 3)) "
        "under `data/local/train/vib/`",
        "what": "a masked autoencoder on Morlet CWT scalograms: each 1-second window of x/y/z "
        "becomes a (3, H, W) image, half of its patches are hidden and a Swin Transformer "
        "encoder with a light decoder learns to rebuild them",
        "prep": "reads every file matched by `data.path`, runs the DQVL gate on each file "
        "(missing axes, NaNs, sampling-rate mismatch, clipping, flat lines), cuts windows of "
        "`data.win_sec` seconds, splits each file by time into train and validation windows "
        "and computes the scalograms once (cached under `artifacts/cache/cwt/`)",
    },
}


def nb(cells: list) -> nbformat.NotebookNode:
    book = new_notebook(cells=cells)
    book.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return book


SETUP = '''import json
import os
import subprocess
import sys
from pathlib import Path


def find_repo_root(start: Path) -> Path:
    """Walk up from ``start`` to the folder that holds pyproject.toml and core/."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "core").is_dir():
            return folder
    raise RuntimeError(f"no repository root above {start}: open this notebook inside the repo")


REPO = find_repo_root(Path.cwd().resolve())
os.chdir(REPO)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.paths import repo_root  # noqa: E402  (importable once REPO is on sys.path)

OUT = repo_root()  # where outputs land: the repository, unless SSL_REPO_ROOT redirects them
ROOT_ARG = "." if OUT == REPO else str(OUT)  # the --repo-root value for the pipelines


def run(module: str, *args: str, check: bool = True) -> None:
    """Run ``python -m <module> <args>`` from the repository root, streaming its output."""
    print("$ python -m", module, *args, flush=True)
    env = {**os.environ, "TQDM_MININTERVAL": "10"}  # fewer progress-bar lines in the notebook
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in proc.stdout:
        print(line, end="")
    code = proc.wait()
    if check and code:
        raise RuntimeError(f"python -m {module} exited with {code} (see the output above)")


print(f"repository: {REPO}\\noutputs:    {OUT}\\npython:     {sys.executable}")'''


def local_notebook(stream: str) -> nbformat.NotebookNode:
    s = STREAMS[stream]
    other = s["other"]
    params = new_code_cell(
        f'''# Parameters (a runner such as the test suite may override this cell).
STREAM = "{stream}"
CONFIG = "configs/{stream}_ssl_local.yaml"        # repository-relative
OVERRIDES: list[str] = []                          # --set overrides, e.g. ["training.epochs=5"]
OTHER_CONFIG = "configs/{other}_ssl_local.yaml"   # the other stream, for the checklist
SKIP_SMOKE: bool | None = None  # checklist scoring smoke; None: skip until both are trained
RUN_ID = "notebook-{stream}"'''
    )
    params.metadata["tags"] = ["parameters"]
    cells = [
        new_markdown_cell(
            f"""# {s['title']} (local run)

This notebook trains and checks the `{stream}` stream on this machine, CPU or CUDA GPU:
{s['what']}.

Every step runs the same `python -m ...` command you would type in a terminal at the
repository root, so the notebook adds nothing you cannot script. Open it with the kernel
of the project's `.venv` (created by `make run`). Input: {s['data']}.
All paths are relative to the repository root, wherever the notebook is opened from."""
        ),
        new_markdown_cell(
            "## 0. Find the repository root\n\nWalks up from the current folder until it "
            "finds `pyproject.toml` and `core/`, so the notebook works from `notebooks/` or "
            "from the root. `run()` starts a module with this kernel's Python from the root."
        ),
        new_code_cell(SETUP),
        new_markdown_cell(
            "## 1. Parameters\n\n`CONFIG` is the local-track config (`device.prefer_cuda: true`,"
            " `device.amp: true`). `OVERRIDES` are passed to every command as `--set key=value`"
            " (for example `training.epochs=5` or `device.amp=false`)."
        ),
        params,
        new_markdown_cell(
            "## 2. Environment check (V-01)\n\nPython version, PyTorch build, whether CUDA is "
            "visible, the GPU name and which mixed-precision dtype it supports. Training runs "
            "on the CPU when no GPU is visible (much slower with the local config)."
        ),
        new_code_cell('run("pipelines.check_env")'),
        new_markdown_cell(
            "## 3. Effective configuration\n\nThe config after `OVERRIDES`, validated by the "
            "same schema the trainer uses; a typo or a bad value fails here with the dotted key."
        ),
        new_code_cell(
            '''from streams import load_config

cfg = load_config(CONFIG, OVERRIDES, stream=STREAM)
SETS = [arg for item in OVERRIDES for arg in ("--set", item)]
print(f"data:       {cfg.data.source}  {cfg.data.path}")
print(f"training:   epochs={cfg.training.epochs} batch_size={cfg.training.batch_size} "
      f"lr={cfg.training.lr}")
print(f"device:     prefer_cuda={cfg.device.prefer_cuda} amp={cfg.device.amp}")
print(f"checkpoint: {cfg.logging.checkpoint_path}   logs: {cfg.logging.log_dir}")'''
        ),
        new_markdown_cell(
            f"""## 4. Train (the DQVL gate runs first)

The trainer {s['prep']}. A checkpoint (last and best) is written atomically after every
epoch, with the effective config beside it. After an interruption, add `"--resume"` to the
command to continue from the last finished epoch."""
        ),
        new_code_cell(
            f'run("trainers.train_{stream}_ssl", "--config", CONFIG, *SETS, "--run-id", RUN_ID)'
        ),
        new_markdown_cell(
            "## 5. DQVL summary\n\nOne decision per input file: `keep` (usable, possibly with "
            "warnings), `drop` (a hard fail such as missing timestamps, too many NaNs or too "
            "few rows; the file was left out of training) or `skipped` (DQVL disabled). The "
            "per-file reports beside the summary hold the metrics and messages."
        ),
        new_code_cell(
            '''summary = json.loads((OUT / cfg.dqvl.report_dir / "summary.json").read_text())
print(json.dumps(summary["counts"]))
for item in summary["files"]:
    notes = ", ".join(item["hard_fails"] + item["warnings"]) or "-"
    print(f"{item['decision']:8} {item['file_id']:40} {notes}")'''
        ),
        new_markdown_cell(
            "## 6. Loss curve\n\nTrain and validation masked-reconstruction loss per epoch "
            "(also in `artifacts/loss/<stream>_loss_history.csv` and in TensorBoard: "
            "`tensorboard --logdir runs`)."
        ),
        new_code_cell(
            '''from IPython.display import Image, display

display(Image(filename=str(OUT / cfg.logging.loss_dir / f"{STREAM}_loss_curve.png")))
print((OUT / cfg.logging.loss_dir / f"{STREAM}_loss_history.csv").read_text())'''
        ),
        new_markdown_cell(
            "## 7. Scoring smoke\n\nLoads the checkpoint safely (`weights_only`), scores a "
            "batch and prints a short summary. A config/checkpoint mismatch fails here with a "
            "clear message."
        ),
        new_code_cell(
            'run("inference.run_scoring_example", "--stream", STREAM,\n'
            '    "--checkpoint", cfg.logging.checkpoint_path, "--config", CONFIG, *SETS)'
        ),
        new_markdown_cell(
            f"""## 8. Validation checklist

Seven checks over the whole run (both checkpoints, the FDC scaler, TensorBoard logs, final
configs, a backup bundle, scoring smoke for both streams, the calibration policy document).
It covers **both** streams, so until `local_{other}_ssl.ipynb` has been run too, the items
for the other stream fail and the scoring smoke is skipped (`--skip-smoke`, see
`SKIP_SMOKE`); this cell
shows the result without stopping the notebook. Once both checkpoints exist, a backup
bundle is packed first so that a full 7/7 pass is possible.

The checklist reads the config *files* (`OVERRIDES` are not applied there): keep lasting
changes, such as your data path, in a copy of the config and point `CONFIG` at it."""
        ),
        new_code_cell(
            '''other_cfg = load_config(OTHER_CONFIG)
both_trained = (OUT / other_cfg.logging.checkpoint_path).is_file()
skip_smoke = not both_trained if SKIP_SMOKE is None else SKIP_SMOKE
configs = ["--patch-config", CONFIG if STREAM == "patchtst" else OTHER_CONFIG,
           "--swin-config", CONFIG if STREAM == "swinmae" else OTHER_CONFIG]
if both_trained:
    run("pipelines.make_bundle", "--repo-root", ROOT_ARG, *configs,
        "--out", f"artifacts/bundles/{RUN_ID}.zip")
checklist_json = "artifacts/validation/checklist.json"
run("pipelines.validate_training_outputs", "--repo-root", ROOT_ARG, *configs,
    "--json-out", checklist_json, *(["--skip-smoke"] if skip_smoke else []), check=False)
checklist = json.loads((OUT / checklist_json).read_text())
print(f"{checklist['passed']}/{checklist['total']} passed")'''
        ),
        new_markdown_cell(
            "## 9. Dashboard state and run history\n\nWrites "
            "`training_dashboard/data/dashboard-state.json` and a snapshot of this run under "
            "`training_dashboard/data/runs/`. View it with `python -m training_dashboard.server "
            "--host 127.0.0.1 --port 8765` and open http://127.0.0.1:8765/."
        ),
        new_code_cell(
            '''run("pipelines.export_training_dashboard_state", "--repo-root", ROOT_ARG, *configs,
    "--out", "training_dashboard/data/dashboard-state.json",
    "--persist-run-history", "--run-id", RUN_ID)
state = json.loads((OUT / "training_dashboard/data/dashboard-state.json").read_text())
for node in state["nodes"]:
    print(f"{node['status']:8} {node['label']}")'''
        ),
    ]
    return nb(cells)


def colab_notebook(stream: str) -> nbformat.NotebookNode:
    s = STREAMS[stream]
    cells = [
        new_markdown_cell(
            f"""# {s['title']} on Google Colab (legacy reference)

The local notebooks (`notebooks/local_{stream}_ssl.ipynb`) are the default way to run
this project. This notebook keeps the Colab route: it puts the repository on Google Drive
(so checkpoints survive a disconnect), installs the pinned requirements, runs the same
`python -m` commands and packs a bundle you can download and import locally with
`python -m pipelines.import_colab_bundle <bundle.zip>`.

Use a GPU runtime: *Runtime > Change runtime type > GPU*."""
        ),
        new_markdown_cell(
            "## 1. Mount Google Drive (optional)\n\nWith Drive the repository and every "
            "output live under `MyDrive/`; without it they live on the runtime's disk and are "
            "lost when the runtime is recycled (download the bundle at the end)."
        ),
        new_code_cell(
            '''USE_DRIVE = True
REPO_URL = ""            # git URL of your copy of the repository; empty: upload a zip instead
REPO_NAME = "sensor-ssl-anomaly"

if USE_DRIVE:
    from google.colab import drive

    drive.mount("/content/drive")
    WORKDIR = f"/content/drive/MyDrive/{REPO_NAME}"
else:
    WORKDIR = f"/content/{REPO_NAME}"
print("repository folder:", WORKDIR)'''
        ),
        new_markdown_cell(
            "## 2. Get the repository\n\nClones `REPO_URL`, or asks for a zip of the "
            "repository (for example `git archive` output) and unpacks it. A second run "
            "reuses the existing folder."
        ),
        new_code_cell(
            '''import os
import zipfile

if not os.path.isdir(WORKDIR):
    if REPO_URL:
        !git clone --depth 1 {REPO_URL} {WORKDIR}
    else:
        from google.colab import files

        uploaded = files.upload()  # choose the repository zip
        with zipfile.ZipFile(next(iter(uploaded))) as zf:
            zf.extractall(WORKDIR)
%cd {WORKDIR}
!ls'''
        ),
        new_markdown_cell(
            "## 3. Install the pinned requirements\n\nSame pins as the local setup "
            "(`requirements.txt`). Colab's preinstalled torch is replaced by the pinned build."
        ),
        new_code_cell(
            "!pip install -q -r requirements.txt\n!python -m pipelines.check_env"
        ),
        new_markdown_cell(
            f"""## 4. Train

Runs with the baseline config on seeded synthetic data. For your own data, copy the files
into `data/local/train/{'fdc' if stream == 'patchtst' else 'vib'}/` inside the repository
folder (on Drive) and add `--set data.source=files`. Keep data paths repository-relative:
a `/content/...` path in a config does not exist on any other machine (the import command
rewrites the ones it can). If the runtime disconnects, rerun this cell with `--resume`."""
        ),
        new_code_cell(
            f'''CONFIG = "configs/{stream}_ssl.yaml"
EXTRA = ""   # e.g. "--set data.source=files --set training.epochs=20"
!python -m trainers.train_{stream}_ssl --config {{CONFIG}} {{EXTRA}}'''
        ),
        new_markdown_cell(
            "## 5. Scoring smoke and loss curve"
        ),
        new_code_cell(
            f'''!python -m inference.run_scoring_example --stream {stream} --checkpoint checkpoints/{stream}_ssl.pt --config {{CONFIG}}
from IPython.display import Image, display

display(Image(filename="artifacts/loss/{stream}_loss_curve.png"))'''
        ),
        new_markdown_cell(
            f"""## 6. Validate, pack and download a bundle

The checklist covers both streams; run `colab_{s['other']}_ssl.ipynb` in the same folder
for a full pass (until then `--skip-smoke` avoids scoring the missing stream). The bundle
(checkpoints, configs, loss history and curves, TensorBoard logs, scaler, DQVL reports and
a `manifest.json` with a SHA-256 per file) is what you import on the local machine."""
        ),
        new_code_cell(
            '''PATCH_CONFIG, SWIN_CONFIG = "configs/patchtst_ssl.yaml", "configs/swinmae_ssl.yaml"
!python -m pipelines.validate_training_outputs --repo-root . --patch-config {PATCH_CONFIG} --swin-config {SWIN_CONFIG} --skip-smoke
!python -m pipelines.make_bundle --repo-root . --patch-config {PATCH_CONFIG} --swin-config {SWIN_CONFIG} --out artifacts/bundles/colab_run.zip

from google.colab import files

files.download("artifacts/bundles/colab_run.zip")'''
        ),
        new_markdown_cell(
            "## 7. On the local machine\n\n```\npython -m pipelines.import_colab_bundle "
            "colab_run.zip --repo-root .\npython -m pipelines.validate_training_outputs "
            "--repo-root . --patch-config configs/patchtst_ssl.yaml --swin-config "
            "configs/swinmae_ssl.yaml\n```\n\nThe import places every file in the local "
            "layout, verifies the manifest checksums, rewrites `/content/...` paths in the "
            "stored configs to repository-relative ones and refuses to overwrite existing "
            "artifacts unless `--force` is given."
        ),
    ]
    return nb(cells)


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for stream in STREAMS:
        for kind, build in (("local", local_notebook), ("colab", colab_notebook)):
            book = build(stream)
            nbformat.validate(book)
            nbformat.write(book, out / f"{kind}_{stream}_ssl.ipynb")
            print("wrote", out / f"{kind}_{stream}_ssl.ipynb")


if __name__ == "__main__":
    main()
