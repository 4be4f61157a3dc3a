"""Train any registered stream: ``python -m trainers.train --config CONFIG``.

The config's ``stream:`` key picks the stream (``streams.names()``, plugins included).
"""

from __future__ import annotations

from core.cli import run_main
from trainers.common import train_with_status


def main(argv: list[str] | None = None) -> int:
    return train_with_status(
        None, argv, "Self-supervised training of the stream named by the config's 'stream:' "
        "key: DQVL, windows, training with checkpoints."
    )


if __name__ == "__main__":
    run_main(main)
