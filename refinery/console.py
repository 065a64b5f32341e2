"""What `refinery run` shows in the terminal: one progress display per phase, then the funnel.

Ray logs a great deal to the driver's stderr (execution plans, operator progress, the local
cluster's start, token auth); a user can act on none of it. A quiet run (the CLI's default)
sends Ray's logging to a file instead, named at the end of the run: under the output folder
when it is local, else under Ray's session folder. `-v` leaves Ray's logging as Ray sets it.

Progress: on a terminal, one live line per phase (tqdm); elsewhere (CI logs, pipes), one
plain line every 10 s at first, less often as a phase goes on (at most every 60 s), so a CI log
stays short. Used as a library (nothing configured), Refinery changes nothing of Ray's logging
and shows no progress."""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time

from refinery.io.storage import Output, filesystem

LOG_FILE = "logs/ray.log"  # under a local output
SESSION_LOG_FILE = "refinery-ray.log"  # under <Ray session>/logs/ when the output is not local
# loggers whose records Ray prints on the driver's stderr with handlers of its own
RAY_LOGGERS = ("ray", "ray.data")

_settings = {"verbose": None}  # None: used as a library, nothing configured
_routing: dict = {}


def configure(verbose: bool) -> None:
    """Called by the CLI: quiet (progress displays, Ray's logging to a file) or verbose (Ray's own output)."""
    _settings["verbose"] = verbose


def quiet() -> bool:
    return _settings["verbose"] is False


def route_ray_logging(out: Output | None) -> None:
    """Before Ray starts, in a quiet run: Ray's loggers write to the run's log file instead of
    stderr, and Ray Data draws no progress bars of its own. With an output that is not local,
    records wait in memory until Ray's session folder exists (`ray_started`)."""
    if not quiet():
        return
    import ray  # noqa: F401  (configures the "ray" logger)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    unroute_ray_logging()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if out is not None and out.local:
        path = out.path(LOG_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        _routing["path"] = path
    else:
        handler = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
        _routing["path"] = None
    handler.setFormatter(formatter)
    handler.setLevel(logging.INFO)  # Ray Data logs DEBUG too (its own file in the session folder has them)
    _routing["handler"] = handler
    _routing["removed"] = []
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):  # the console ones
                logger.removeHandler(h)
                _routing["removed"].append((logger, h))
        logger.addHandler(handler)


def ray_started() -> None:
    """After ray.init: a log kept in memory goes to a file in Ray's session folder."""
    handler = _routing.get("handler")
    if not isinstance(handler, logging.handlers.MemoryHandler):
        return
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    path = os.path.join(session, "logs", SESSION_LOG_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(handler.formatter)
    target.setLevel(handler.level)
    handler.setTarget(target)
    handler.flush()
    for name in RAY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).addHandler(target)
    _routing["handler"], _routing["path"] = target, path


def unroute_ray_logging() -> None:
    """Ray's handlers back as they were (a second run in one process routes again)."""
    handler = _routing.pop("handler", None)
    if handler is None:
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    for logger, h in _routing.pop("removed", []):
        logger.addHandler(h)
    handler.close()


def ray_log_path() -> str | None:
    """Where this process's Ray logging went, in a quiet run."""
    handler = _routing.get("handler")
    if handler is not None:
        handler.flush()
    return _routing.get("path")


def input_bytes(paths: list[str]) -> int | None:
    """The inputs' total size, when every one of them has a known size (local files, object storage)."""
    total = 0
    for path in paths:
        if path.startswith(("http://", "https://")):
            return None
        try:
            fs, inner = filesystem(path)
            size = fs.get_file_info(inner).size
        except (OSError, ValueError):
            return None
        if size is None:
            return None
        total += size
    return total


def _size(stream) -> tuple[int, int]:
    """The terminal's columns and lines (100 x 24 where it says 0, as a bare pseudo-terminal
    does: tqdm draws nothing on a terminal of 0 lines)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 100, 24
    return size.columns or 100, size.lines or 24


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def _megabytes(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class Progress:
    """One phase's display: records read and documents kept so far, docs/s and, when the
    phase's size is known (input bytes, or `--limit` records), how far it is and an ETA.
    A background thread keeps the elapsed time moving when no update comes. A phase that
    reports only at its end (`counting=False`: the dedup phase) shows its elapsed time."""

    def __init__(self, phase: str, total_bytes: int | None = None, total_records: int | None = None,
                 stream=None, interval: tuple[float, float] = (10.0, 60.0), counting: bool = True):
        self.phase, self.total_bytes, self.total_records, self.counting = phase, total_bytes, total_records, counting
        self.stream = stream or sys.stderr
        self.records = self.kept = self.bytes = 0
        self.first_bytes: int | None = None  # where the inputs stood at the first update, and when
        self.first_at = 0.0
        self.started = time.monotonic()
        self.interval = interval
        self.next_line = self.started + interval[0]
        self.tty = self.stream.isatty()
        self.lock = threading.Lock()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            columns, lines = _size(self.stream)
            total = self.total_records or self.total_bytes
            unit = " records" if self.total_records else "B"
            bar_format = (f"{{desc}} {{percentage:3.0f}}%|{{bar:16}}| {{n_fmt}}/{{total_fmt}}{unit} [{{elapsed}}<{{remaining}}{{postfix}}]"
                          if total else "{desc} [{elapsed}{postfix}]")
            self.bar = tqdm(total=total, desc=phase, file=self.stream, leave=False, unit_scale=not self.total_records, ncols=columns, nrows=lines,
                            bar_format=bar_format)
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def update(self, records: int = 0, kept: int = 0, position: int | None = None) -> None:
        """`records` more read and `kept` more kept; `position`: input bytes reached so far."""
        with self.lock:
            self.records += records
            self.kept += kept
            if position is not None:
                if self.first_bytes is None:
                    self.first_bytes, self.first_at = position, time.monotonic()
                self.bytes = max(self.bytes, position)
            self._show()

    def _rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.records / elapsed if elapsed > 0 else 0.0

    def _fraction(self) -> tuple[float | None, float | None]:
        """How far the phase is (0-1) and the seconds left, when its size is known."""
        if self.total_records:
            done, total, start, since = self.records, self.total_records, 0, self.started
        elif self.total_bytes and self.first_bytes is not None:
            done, total, start, since = self.bytes, self.total_bytes, self.first_bytes, self.first_at
        else:
            return None, None
        elapsed = time.monotonic() - since
        fraction = min(1.0, done / total) if total else 1.0
        speed = (done - start) / elapsed if elapsed > 0 else 0
        return fraction, ((total - done) / speed if speed > 0 else None)

    def _counts(self) -> str:
        return f"{self.records:,} records read, {self.kept:,} documents kept, {self._rate():,.0f} docs/s"

    def line(self) -> str:
        fraction, left = self._fraction()
        text = f"{self.phase}: {self._counts() + ', ' if self.counting else ''}{_duration(time.monotonic() - self.started)} elapsed"
        if fraction is not None:
            of = f" of {_megabytes(self.total_bytes)}" if self.total_bytes and not self.total_records else ""
            text += f", {100 * fraction:.0f}%{of}" + (f", ETA {_duration(left)}" if left is not None else "")
        return text

    def _show(self) -> None:
        now = time.monotonic()
        if self.bar is not None:
            self.bar.n = self.records if self.total_records or not self.total_bytes else self.bytes
            if self.counting:
                self.bar.set_postfix_str(f"{self.records:,} read, {self.kept:,} kept, {self._rate():,.0f} docs/s", refresh=False)
            self.bar.refresh()
        elif now >= self.next_line:
            print(self.line(), file=self.stream, flush=True)
            low, high = self.interval
            self.next_line = now + min(high, max(low, (now - self.started) / 4))

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                self._show()

    def close(self, summary: str | None = None) -> None:
        """Stop the display and print one line for the finished phase."""
        self.stop.set()
        self.ticker.join()
        elapsed = time.monotonic() - self.started
        if self.bar is not None:
            self.bar.close()
        text = summary or f"{self.records:,} records read, {self.kept:,} documents kept"
        print(f"{self.phase}: {text} in {elapsed:,.1f} s ({self._rate():,.0f} docs/s)", file=self.stream, flush=True)


class NoProgress:
    """What a phase reports to when nothing is shown (library use, -v)."""

    records = kept = 0

    def update(self, records: int = 0, kept: int = 0, position: int | None = None) -> None:
        pass

    def close(self, summary: str | None = None) -> None:
        pass


def progress(phase: str, total_bytes: int | None = None, total_records: int | None = None, counting: bool = True) -> Progress | NoProgress:
    return Progress(phase, total_bytes, total_records, counting=counting) if quiet() else NoProgress()
