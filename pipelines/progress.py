"""One progress bar for a command's long work, on the terminal (libraries' output goes to the log)."""

from typing import Any

from pipelines.runlog import terminal

__all__ = ["Progress"]


class Progress:
    """A ``progress(done, total)`` callback that draws one bar over ``phases`` runs of the same work.

    The bar is drawn only on a terminal (tqdm's ``disable=None``): a log or a CI run gets no bar.

    Args:
        description: What the bar counts.
        phases: How many times the work reports from 0 to its total (e.g. one backtest a stream).
    """

    def __init__(self, description: str, phases: int = 1) -> None:
        self.description = description
        self.phases = max(phases, 1)
        self.finished = 0
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        """Move the bar to ``done`` of ``total`` in the current phase (the last phase's total closes it)."""
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=total * self.phases, desc=self.description, file=terminal(), disable=None, leave=False
            )
        self.bar.n = self.finished * total + done
        self.bar.refresh()
        if done >= total:
            self.finished += 1
            if self.finished >= self.phases:
                self.close()

    def close(self) -> None:
        """Take the bar off the terminal."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
