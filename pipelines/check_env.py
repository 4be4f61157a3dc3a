"""Environment check (V-01): can this machine run the product, and on what device?

Prints one row per check (OK / WARN / FAIL): Python version, torch version and build,
CUDA visibility, device name and memory, AMP dtype support, the key packages, and write
access to the output folders.  No CUDA is a WARN (the CPU profile still works); a
missing required package, an old Python or an unwritable folder is a FAIL -> exit 1.

    python -m pipelines.check_env [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from core.cli import run_main
from core.paths import repo_root

MIN_PYTHON = (3, 11)
# import name -> label shown in the table; the label's first word is the distribution name
REQUIRED_PACKAGES: dict[str, str] = {
    "timm": "timm",
    "numpy": "numpy",
    "pandas": "pandas",
    "pywt": "PyWavelets (pywt)",
    "pydantic": "pydantic",
    "yaml": "PyYAML (yaml)",
    "tensorboard": "tensorboard",
    "fastapi": "fastapi",
}
WRITABLE_DIRS = ("checkpoints", "artifacts", "runs")

Importer = Callable[[str], ModuleType]


@dataclass(frozen=True)
class Row:
    check: str
    status: str  # OK | WARN | FAIL
    detail: str


def check_python(version: Sequence[int] = tuple(sys.version_info[:3])) -> Row:
    shown = ".".join(str(v) for v in version[:3])
    if tuple(version[:2]) < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return Row("python", "FAIL", f"{shown}; {need} or newer is required")
    return Row("python", "OK", f"{shown} ({platform.python_implementation()})")


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def check_torch(torch: Any) -> list[Row]:
    """Rows for the torch build, CUDA, the device and AMP support (``torch`` injectable)."""
    cuda_build = getattr(torch.version, "cuda", None)
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU-only build"
    rows = [Row("torch", "OK", f"{torch.__version__} ({build})")]
    if not torch.cuda.is_available():
        reason = "CPU-only torch build" if not cuda_build else "no CUDA device or driver visible"
        rows.append(Row("cuda available", "WARN",
                        f"False ({reason}); the CPU profile is used (slower, AMP off)"))
        rows.append(Row("device", "OK", f"cpu ({os.cpu_count()} cores)"))
        rows.append(Row("amp dtypes", "OK", "off on CPU (AMP applies to CUDA only)"))
        return rows
    count = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    rows.append(Row("cuda available", "OK", f"True ({count} device(s))"))
    rows.append(Row("device", "OK", f"{torch.cuda.get_device_name(0)}, "
                    f"{_gib(props.total_memory)}, compute capability {props.major}.{props.minor}"))
    if torch.cuda.is_bf16_supported():
        rows.append(Row("amp dtypes", "OK", "bf16 supported (used), fp16 supported"))
    else:
        rows.append(Row("amp dtypes", "WARN",
                        "bf16 not supported; fp16 with a grad scaler is used"))
    return rows


def check_package(name: str, label: str, importer: Importer) -> Row:
    try:
        module = importer(name)
    except Exception as exc:  # a broken install can raise anything at import time
        return Row(label, "FAIL", f"not importable ({type(exc).__name__}: {exc}); "
                   "run: make venv  (or pip install -r requirements.txt -c requirements.lock)")
    try:  # the installed distribution's version (a module's __version__ can lag behind)
        version = metadata.version(label.split()[0])
    except metadata.PackageNotFoundError:
        version = str(getattr(module, "__version__", "installed"))
    return Row(label, "OK", version)


def check_writable(root: Path, rel: str) -> Row:
    """Create the folder if needed and write + delete a probe file in it."""
    folder = root / rel
    probe = folder / f".write_probe_{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return Row(f"write {rel}/", "FAIL", f"not writable ({exc.strerror or exc})")
    return Row(f"write {rel}/", "OK", "writable")


def run_checks(
    root: Path,
    packages: dict[str, str] = REQUIRED_PACKAGES,
    importer: Importer = importlib.import_module,
    python_version: Sequence[int] = tuple(sys.version_info[:3]),
) -> list[Row]:
    rows = [check_python(python_version)]
    try:
        torch = importer("torch")
    except Exception as exc:
        rows.append(Row("torch", "FAIL", f"not importable ({type(exc).__name__}: {exc})"))
    else:
        rows += check_torch(torch)
    rows += [check_package(name, label, importer) for name, label in packages.items()]
    rows += [check_writable(root, rel) for rel in WRITABLE_DIRS]
    return rows


def format_table(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.check:<{width}}  {r.status:<6}  {r.detail}" for r in rows]
    fails = sum(r.status == "FAIL" for r in rows)
    warns = sum(r.status == "WARN" for r in rows)
    verdict = "environment OK" if not fails else "environment NOT ready"
    lines.append(f"{verdict}: {fails} FAIL, {warns} WARN, {len(rows) - fails - warns} OK")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.check_env",
        description="V-01 environment check; exit 1 when a required piece is missing.",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = run_checks(repo_root(), REQUIRED_PACKAGES)
    ok = not any(r.status == "FAIL" for r in rows)
    if args.json:
        print(json.dumps({"ok": ok, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(format_table(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
