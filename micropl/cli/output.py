"""What the commands print: JSON on stdout and progress bars on stderr.

Every ``--json`` output goes through :func:`print_json`, so each command's
machine output follows the same rules: numpy arrays and scalars become lists and
numbers, NaN and infinities become ``null`` (JSON has neither), tuples become
lists, and any other object its ``str``. The exit codes and the one-line error
messages are :mod:`micropl.cli`'s (:func:`micropl.cli.main`).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

from micropl.acquisition.runner import Progress

__all__ = ["ProgressDisplay", "jsonable", "print_json"]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types.

    Parameters
    ----------
    value
        Nested dicts, lists and tuples of numbers, strings, numpy arrays and
        scalars, or other objects.

    Returns
    -------
    Any
        The same tree with numpy values as Python numbers and lists, NaN and
        infinities as None, tuples as lists and other objects as their ``str``.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return str(value)


def print_json(value: Any, *, indent: int | None = None) -> None:
    """Write ``value`` as one JSON document and a newline on stdout (see :func:`jsonable`)."""
    sys.stdout.write(json.dumps(jsonable(value), indent=indent, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- progress
class ProgressDisplay:
    """Rich progress bars fed from the stream's Progress records (terminals only)."""

    def __init__(self, session: Any, quiet: bool, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = not quiet and self.console.is_terminal
        self.session = session
        self.progress = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressDisplay:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.progress = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(),
                                     console=self.console, transient=False)
        self.progress.start()
        self.session.on(self._update, maxlen=200)
        return self

    def _update(self, item: Any) -> None:
        if not isinstance(item, Progress) or self.progress is None:
            return
        # One bar for the QDs ("QD 3/30"), one per other stage ("cooling camera (…)").
        key = "qd" if item.stage.startswith("QD") else item.stage.split(" (")[0]
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(item.stage, total=item.total)
        self.progress.update(self.tasks[key], description=item.stage, completed=item.done,
                             total=item.total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
