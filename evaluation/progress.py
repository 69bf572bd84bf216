"""Progress reporting for the steps of a study (on stderr, via rich)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Steps:
    """Announce each step of a run with a spinner and report its duration.

    Parameters
    ----------
    quiet : bool
        Report nothing.
    """

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step; show a spinner while it runs."""
        start = time.perf_counter()
        if self.quiet:
            yield
        else:
            with self.console.status(f"{name}..."):
                yield
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {name} [dim]({elapsed:.1f} s)[/dim]")
