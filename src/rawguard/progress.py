"""Progress bars (tqdm: count, rate, ETA) that stay readable in log files.

On a terminal a bar redraws ~10 times a second. Written to a file or a CI log, every redraw is kept
(joined by carriage returns), so a 15-minute training run leaves thousands of them: there,
:func:`progress_bar` redraws every :data:`LOG_INTERVAL_S` seconds instead.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

LOG_INTERVAL_S = 30.0


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)``; ``mininterval`` defaults to :data:`LOG_INTERVAL_S` when the bar's
    stream (``file``, default stderr) is not a terminal."""
    stream = kwargs.get("file") or sys.stderr
    in_notebook = "ipykernel" in sys.modules  # widgets redraw in place: nothing piles up
    if not in_notebook and not _is_terminal(stream):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(*args, **kwargs)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
