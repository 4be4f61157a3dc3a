"""Notebooks: static checks on all four, and a headless run of both local notebooks.

The local pair is executed with nbclient on the tiny baseline configs (via an injected
parameters cell, as papermill does) under a temporary repository root, so the real
checkpoints/, artifacts/ and runs/ are never touched.  The kernel is this interpreter:
its kernelspec is written into a temporary folder, so nothing depends on the machine's
installed Jupyter kernels.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
LOCAL = ("local_patchtst_ssl.ipynb", "local_swinmae_ssl.ipynb")
COLAB = ("colab_patchtst_ssl.ipynb", "colab_swinmae_ssl.ipynb")

# Constructs that tie a notebook to the Colab runtime (TR-02, and section 5 of the TRD).
COLAB_ONLY = (
    (re.compile(r"google\.colab"), "imports google.colab"),
    (re.compile(r"/content\b"), "uses a /content path"),
    (re.compile(r"drive\.mount"), "mounts Google Drive"),
    (re.compile(r"^\s*!", re.M), "has a ! shell line"),
    (re.compile(r"^\s*%", re.M), "has a % magic line"),
)
MODULE_PATTERNS = (
    re.compile(r"python -m ([A-Za-z_][\w.]*)"),
    re.compile(r"""\brun\(\s*["']([A-Za-z_][\w.]*)["']"""),
)


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def structure_issues(nb: nbformat.NotebookNode) -> list[str]:
    """Schema errors and committed outputs (notebooks are stored clean)."""
    issues = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        issues.append(f"invalid nbformat: {exc.message}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            issues.append(f"cell {i}: outputs or execution count committed")
    return issues


def colab_only_issues(nb: nbformat.NotebookNode) -> list[str]:
    """Every Colab-only construct in a notebook, as 'cell N: what'."""
    return [
        f"cell {i}: {what}"
        for i, cell in enumerate(nb.cells)
        for pattern, what in COLAB_ONLY
        if pattern.search(cell.source)
    ]


def modules_used(nb: nbformat.NotebookNode) -> set[str]:
    """Modules a notebook starts with ``python -m X`` or the local ``run("X", ...)`` helper."""
    return {m for cell in nb.cells for p in MODULE_PATTERNS for m in p.findall(cell.source)}


def missing_modules(modules: set[str]) -> list[str]:
    def exists(module: str) -> bool:
        base = REPO.joinpath(*module.split("."))
        return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()

    return sorted(m for m in modules if not exists(m))


# --------------------------------------------------------------------------- static
@pytest.mark.parametrize("name", LOCAL + COLAB)
def test_notebook_is_valid_and_clean(name: str) -> None:
    nb = load(name)
    assert structure_issues(nb) == []
    assert nb.metadata.kernelspec.name == "python3"
    assert [c for c in nb.cells if c.cell_type == "markdown"], "explain the steps in markdown"


@pytest.mark.parametrize("name", LOCAL)
def test_local_notebook_has_no_colab_constructs(name: str) -> None:
    nb = load(name)
    assert colab_only_issues(nb) == []
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "CONFIG = " in tagged[0].source and "OVERRIDES" in tagged[0].source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "def find_repo_root" in first_code.source


@pytest.mark.parametrize("name", LOCAL + COLAB)
def test_notebook_only_calls_modules_that_exist(name: str) -> None:
    used = modules_used(load(name))
    assert {"trainers.train_patchtst_ssl", "trainers.train_swinmae_ssl"} & used
    assert "inference.run_scoring_example" in used
    assert missing_modules(used) == []


def test_colab_pair_is_the_colab_flavour() -> None:
    for name in COLAB:
        found = " ".join(colab_only_issues(load(name)))
        assert "google.colab" in found and "/content" in found and "Google Drive" in found


def test_static_check_catches_a_content_path_edit() -> None:
    nb = copy.deepcopy(load(LOCAL[0]))
    assert colab_only_issues(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[-1].source += '\nDATA = "/content/drive/MyDrive/data/*.csv"'
    code[0].source += "\n%cd notebooks"
    issues = colab_only_issues(nb)
    assert any("/content path" in i for i in issues)
    assert any("% magic" in i for i in issues)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi")]
    assert any("outputs" in i for i in structure_issues(nb))


def test_module_check_catches_an_undocumented_command() -> None:
    nb = copy.deepcopy(load(COLAB[0]))
    nb.cells.append(nbformat.v4.new_code_cell("!python -m pipelines.not_a_module --x 1"))
    assert "pipelines.not_a_module" in missing_modules(modules_used(nb))
    assert "trainers.train_patchtst_ssl" not in missing_modules(modules_used(nb))


# --------------------------------------------------------------------------- execution
TINY = {
    "local_patchtst_ssl.ipynb": {
        "CONFIG": "configs/patchtst_ssl.yaml",
        "OTHER_CONFIG": "configs/swinmae_ssl.yaml",
        "OVERRIDES": [
            "training.epochs=2",
            "training.max_steps_per_epoch=3",
            "data.synthetic.n_files=2",
            "data.synthetic.n_rows=400",
        ],
        "RUN_ID": "nb-test-patchtst",
    },
    "local_swinmae_ssl.ipynb": {
        "CONFIG": "configs/swinmae_ssl.yaml",
        "OTHER_CONFIG": "configs/patchtst_ssl.yaml",
        "OVERRIDES": [
            "training.epochs=2",
            "training.max_steps_per_epoch=2",
            "data.synthetic.n_files=2",
            "data.synthetic.duration_sec=8",
        ],
        "SKIP_SMOKE": True,  # the smoke inside the checklist is covered by test_colab_import
        "RUN_ID": "nb-test-swinmae",
    },
}


def with_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
    """Insert an 'injected-parameters' cell after the tagged one (papermill's convention)."""
    nb = copy.deepcopy(nb)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, cell)
    return nb


def kernel_manager(tmp: Path) -> KernelManager:
    """A kernel running this very interpreter (the project's venv), found in ``tmp`` only."""
    kernels = tmp / "kernels"
    if not (kernels / "ssl-test").is_dir():
        write_kernel_spec(kernels / "ssl-test", overrides={"display_name": "ssl test"})
    spec = json.loads((kernels / "ssl-test" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    return KernelManager(
        kernel_name="ssl-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def has_png(nb: nbformat.NotebookNode) -> bool:
    return any("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run both local notebooks, PatchTST first, in one temporary repository root."""
    tmp = tmp_path_factory.mktemp("notebooks")
    root = tmp / "root"
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "docs", root / "docs")
    mp = pytest.MonkeyPatch()
    mp.setenv("SSL_REPO_ROOT", str(root))
    results: dict = {"root": root, "seconds": {}}
    try:
        for name in LOCAL:
            nb = with_parameters(load(name), TINY[name])
            client = NotebookClient(
                nb,
                km=kernel_manager(tmp),
                timeout=300,
                resources={"metadata": {"path": str(NOTEBOOKS)}},  # start inside notebooks/
            )
            t0 = time.perf_counter()
            client.execute()
            results["seconds"][name] = time.perf_counter() - t0
            results[name] = nb
            print(f"{name}: {results['seconds'][name]:.1f} s")
    finally:
        mp.undo()
    return results


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", LOCAL)
def test_local_notebook_runs_headless(executed: dict, name: str) -> None:
    nb, root = executed[name], executed["root"]
    stream = "patchtst" if "patchtst" in name else "swinmae"
    text = outputs_text(nb)
    assert f"outputs:    {root}" in text  # found the repo from notebooks/, honoured SSL_REPO_ROOT
    assert has_png(nb), "loss curve not shown inline"
    assert '{"keep": 2, "drop": 0, "skipped": 0}' in text  # the DQVL summary cell
    assert (root / f"checkpoints/{stream}_ssl.pt").stat().st_size > 0
    history = (root / f"artifacts/loss/{stream}_loss_history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,lr,seconds" and len(history) == 3
    snapshot = root / "training_dashboard/data/runs" / f"{TINY[name]['RUN_ID']}.json"
    assert json.loads(snapshot.read_text())["meta"]["run_id"] == TINY[name]["RUN_ID"]
    index = json.loads((root / "training_dashboard/data/runs/index.json").read_text())
    assert TINY[name]["RUN_ID"] in [r["run_id"] for r in index["runs"]]


@pytest.mark.timeout(900)
def test_second_notebook_completes_the_checklist(executed: dict) -> None:
    """After both notebooks, the swinmae one packs a bundle and the checklist is 7/7."""
    root = executed["root"]
    checklist = json.loads((root / "artifacts/validation/checklist.json").read_text())
    assert [i["status"] for i in checklist["items"]] == ["PASS"] * 7, checklist["items"]
    assert checklist["ok"] is True and checklist["passed"] == 7
    bundle = next(i for i in checklist["items"] if i["key"] == "backup_bundle")
    assert bundle["detail"].startswith("artifacts/bundles/nb-test-swinmae.zip")
    swin_text = outputs_text(executed["local_swinmae_ssl.ipynb"])
    assert "bundle: artifacts/bundles/nb-test-swinmae.zip" in swin_text
    assert "\n7/7 passed\n" in swin_text
    # the first notebook ran before swinmae existed: its checklist said so without stopping
    assert "\n3/7 passed\n" in outputs_text(executed["local_patchtst_ssl.ipynb"])
