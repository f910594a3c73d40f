"""Progress reports: a tqdm bar on a terminal, a plain line now and then anywhere else.

A tqdm bar redraws itself with carriage returns several times a second. In a file (``nohup``,
a CI or scheduler log) every frame stays: one training run's log grew to megabytes of ``\\r``
frames. So :func:`progress` draws a bar only where the stream is a terminal (or a Jupyter
notebook, where ``tqdm.auto`` draws a widget instead of frames) and otherwise writes what the
bar shows (count, total, percentage, elapsed, rate, time left) as one line every
:data:`LOG_EVERY_S` seconds, and once more at the end if it wrote any. A loop shorter than
that writes nothing.

Every progress report in recsys_cl goes through :func:`progress`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import IO, Any, Protocol

# Seconds between two plain progress lines: a 10-minute epoch logs 20 lines, not 10,000 frames.
LOG_EVERY_S = 30.0


class Progress(Protocol):
    """What recsys_cl uses of a tqdm bar."""

    def __iter__(self) -> Iterator[Any]: ...

    def __enter__(self) -> Progress: ...

    def __exit__(self, *exc: object) -> None: ...

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


def draws_bars(stream: IO[str] | None = None) -> bool:
    """Whether a bar on ``stream`` (default: stderr, where tqdm writes) is drawn in place: a
    terminal, or a Jupyter notebook's widget."""
    stream = sys.stderr if stream is None else stream
    if _in_notebook():
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _in_notebook() -> bool:
    # tqdm.auto picks its notebook bar exactly when it runs in a Jupyter kernel; imported first,
    # it silences the warning tqdm.autonotebook gives when imported on its own there.
    import tqdm.auto  # noqa: F401
    from tqdm import autonotebook, std

    return autonotebook.tqdm is not std.tqdm


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    unit_scale: bool = False,
    unit_divisor: int = 1000,
    stream: IO[str] | None = None,
    every_s: float = LOG_EVERY_S,
) -> Progress:
    """A progress report over ``iterable`` (or updated by hand with ``update(n)``).

    Args:
        total: the count at the end (default: ``len(iterable)`` where it has one).
        enabled: False reports nothing (a disabled tqdm bar).
        leave: keep the bar on screen when done (terminal only; the plain lines always stay).
        stream: where to write (default: stderr).
        every_s: seconds between two plain lines.
    """
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    if not enabled or draws_bars(stream):
        from tqdm.auto import tqdm

        bar: Progress = tqdm(
            iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
            unit_divisor=unit_divisor, leave=leave, disable=not enabled, file=stream,
        )
        return bar
    return LineProgress(
        iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
        unit_divisor=unit_divisor, stream=stream, every_s=every_s,
    )


class LineProgress:
    """tqdm's report as plain lines: one every ``every_s`` seconds, and one at the end when
    any was written before it (so a log shows that a long loop finished)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        unit_scale: bool = False,
        unit_divisor: int = 1000,
        stream: IO[str] | None = None,
        every_s: float = LOG_EVERY_S,
    ) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.unit_divisor = unit_divisor
        self.stream = stream
        self.every_s = every_s
        self.n = 0
        self.start = time.monotonic()
        self._last = self.start
        self._written = False
        self._written_n = 0
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._write(now)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._written and self.n != self._written_n:
            self._write(time.monotonic())

    def line(self, now: float | None = None) -> str:
        """What a bar would show now, without the bar."""
        from tqdm.std import tqdm

        elapsed = (time.monotonic() if now is None else now) - self.start
        percent = "{percentage:.0f}% " if self.total else ""
        unit = "{unit}" if self.unit_scale else " {unit}"  # as tqdm: 1.2MB, 120 batch
        return str(
            tqdm.format_meter(
                self.n,
                self.total,
                elapsed,
                prefix=self.desc,
                unit=self.unit,
                unit_scale=self.unit_scale,
                unit_divisor=self.unit_divisor,
                bar_format=f"{{desc}}: {percent}{{n_fmt}}/{{total_fmt}}{unit} "
                "[{elapsed}<{remaining}, {rate_fmt}]"
                if self.total
                else f"{{desc}}: {{n_fmt}}{unit} [{{elapsed}}, {{rate_fmt}}]",
            )
        )

    def _write(self, now: float) -> None:
        stream = sys.stderr if self.stream is None else self.stream
        print(self.line(now), file=stream, flush=True)
        self._last, self._written, self._written_n = now, True, self.n


__all__ = ["LOG_EVERY_S", "LineProgress", "Progress", "draws_bars", "progress"]
