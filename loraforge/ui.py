"""Terminal output: messages, progress bars and tables, all on stderr except tables and results."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class UI:
    """Prints through tqdm so that messages never tear a progress bar. `quiet` keeps only warnings."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)

    def warn(self, message: str) -> None:
        tqdm.write(f"warning: {message}", file=sys.stderr)

    def progress(self, total: int | None, desc: str, unit: str = "it") -> tqdm:
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=self.quiet, dynamic_ncols=True)

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        print(format_table(header, rows))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    grid = [header] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in grid) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
