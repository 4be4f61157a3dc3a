"""Route the lowercase docs links (prd.md, trd.md, todo.md) to the local or baseline set.

``python scripts/switch_docs.py local`` points every link at the local CUDA track
(PRD_local_cuda.md, ...); ``baseline`` points them back at PRD.md, TRD.md, Todo.md;
``--status`` only prints the current routing.  Each link is replaced by creating the new
symlink under a temporary name and renaming it over the old one (``os.replace``), so a
reader never sees a missing link.  No document is ever deleted or rewritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# link name -> target per routing (targets are relative to the link's folder)
ROUTES: dict[str, dict[str, str]] = {
    "local": {
        "prd.md": "PRD_local_cuda.md",
        "trd.md": "TRD_local_cuda.md",
        "todo.md": "Todo_local_cuda.md",
    },
    "baseline": {"prd.md": "PRD.md", "trd.md": "TRD.md", "todo.md": "Todo.md"},
}


class RoutingError(Exception):
    """A link cannot be switched safely (missing target, or a real file in the way)."""


def current_routing(root: Path) -> dict[str, str | None]:
    """Link name -> its target text, or None when the link does not exist."""
    out: dict[str, str | None] = {}
    for name in ROUTES["local"]:
        link = root / name
        out[name] = os.readlink(link) if link.is_symlink() else None
    return out


def routing_name(targets: dict[str, str | None]) -> str:
    """'local', 'baseline' or 'mixed' for a mapping from :func:`current_routing`."""
    for name, route in ROUTES.items():
        if targets == route:
            return name
    return "mixed"


def _check(root: Path, route: dict[str, str]) -> None:
    for name, target in route.items():
        if not (root / target).is_file():
            raise RoutingError(f"{target}: target document not found in {root.name}/")
        link = root / name
        if link.exists() and not link.is_symlink():
            raise RoutingError(f"{name}: is a regular file, not a link; refusing to replace it")


def switch(root: Path, which: str) -> dict[str, str]:
    """Point every lowercase link at the ``which`` set; checks everything before changing."""
    route = ROUTES[which]
    _check(root, route)
    for name, target in route.items():
        tmp = root / f".{name}.switch-{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, root / name)
    return dict(route)


def format_routing(root: Path) -> str:
    targets = current_routing(root)
    lines = [f"docs routing: {routing_name(targets)}"]
    lines += [f"  {name} -> {target or '(missing)'}" for name, target in targets.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/switch_docs.py",
        description="Switch prd.md / trd.md / todo.md between the local CUDA track docs and "
        "the baseline docs (nothing is deleted).",
    )
    parser.add_argument("which", nargs="?", choices=sorted(ROUTES), help="docs set to route to")
    parser.add_argument("--status", action="store_true", help="print the current routing only")
    args = parser.parse_args(argv)
    if not args.status and args.which is None:
        parser.error("give 'local' or 'baseline', or --status")
    if args.which and not args.status:
        try:
            switch(ROOT, args.which)
        except RoutingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(format_routing(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
