"""Console output: progress bars with an ETA, and messages at three verbosity levels."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_bytes(n: int) -> str:
    """Decimal units, as the size budget is given: 1 KB = 10^3 bytes, 1 MB = 10^6 bytes, 1 GB = 10^9 bytes."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Console:
    """verbosity: 0 quiet (errors only), 1 normal, 2 detail."""

    def __init__(self, verbosity: int = 1, stream=None):
        self.verbosity = verbosity
        self.stream = stream or sys.stderr

    def info(self, message: str) -> None:
        if self.verbosity >= 1:
            print(message, file=self.stream, flush=True)

    def detail(self, message: str) -> None:
        if self.verbosity >= 2:
            print("  " + message, file=self.stream, flush=True)

    def progress(self, total: int, desc: str) -> Progress:
        return Progress(total, desc, self if self.verbosity >= 1 else None)


_interrupted = False


def stop_on_interrupt() -> None:
    """Make Ctrl-C stick: the handler raises KeyboardInterrupt as usual and also records it, and
    every progress update raises it again. A KeyboardInterrupt that lands where Python cannot
    propagate it (a finalizer or a callback run from C++, which print "Exception ignored" and go
    on) then still stops the build at the next step of whatever stage is running."""
    import signal

    def handler(signum, frame):
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


class Progress:
    """A bar redrawn in place on a terminal (a line every ~10 % elsewhere), with rate and ETA."""

    def __init__(self, total: int, desc: str, console: Console | None):
        self.total = max(1, int(total))
        self.desc = desc
        self.console = console
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(console) and hasattr(console.stream, "isatty") and console.stream.isatty()

    def update(self, n: int = 1) -> None:
        self.set(self.n + n)

    def set(self, n: int) -> None:
        if _interrupted:
            raise KeyboardInterrupt
        self.n = min(n, self.total)
        now = time.perf_counter()
        if self.console is None:
            return
        if self._tty and (now - self._last_draw > 0.1 or self.n == self.total):
            self._last_draw = now
            self.console.stream.write("\r" + self._line() + "\x1b[K")
            self.console.stream.flush()
        elif not self._tty and self.n * 10 // self.total > self._last_decile and self.n < self.total:
            self._last_decile = self.n * 10 // self.total
            print(self._line(), file=self.console.stream, flush=True)

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        frac = self.n / self.total
        width = 24
        filled = int(width * frac)
        bar = "#" * filled + "-" * (width - filled)
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        return (
            f"  {self.desc:<14} [{bar}] {self.n}/{self.total} {format_seconds(elapsed)} eta "
            f"{format_seconds(eta)}"
        )

    def close(self) -> None:
        if self.console is None:
            return
        self.n = self.total
        if self._tty:
            self.console.stream.write("\r" + self._line() + "\x1b[K\n")
        else:
            print(self._line(), file=self.console.stream)
        self.console.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self.console is not None and self._tty:
            self.console.stream.write("\n")
