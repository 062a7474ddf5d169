"""Progress bars redraw rarely when written to a log file, as usual on a terminal."""

from __future__ import annotations

import io
import time

from rawguard.progress import LOG_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream: io.StringIO) -> int:
    bar = progress_bar(total=40, file=stream, miniters=1)
    for _ in range(40):  # 0.4 s of updates: ~4 redraws at tqdm's usual 0.1 s
        time.sleep(0.01)
        bar.update()
    bar.close()
    return stream.getvalue().count("\r")


def test_bars_in_log_files_redraw_every_log_interval():
    assert progress_bar(total=10, file=io.StringIO()).mininterval == LOG_INTERVAL_S
    assert _redraws(_Terminal()) >= 4
    assert _redraws(io.StringIO()) <= 2  # the first and the final state only


def test_terminal_bars_and_explicit_intervals_are_left_alone():
    assert progress_bar(total=10, file=_Terminal()).mininterval == 0.1  # tqdm's default
    assert progress_bar(total=10, file=io.StringIO(), mininterval=1.0).mininterval == 1.0
