"""Workers under test as child processes: each in its own session (so a stop reaches all it
started), dying with the bench even when the bench is SIGKILLed, with its RSS sampled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

SAMPLE_EVERY_S = 0.2


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the bench dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    total = times.user + times.system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


class Child:
    def __init__(self, name: str, argv: list[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log, self.cwd = name, argv, log, cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.samples: list[tuple[float, int]] = []
        self.cpu_samples: list[tuple[float, float]] = []
        """(monotonic time, CPU seconds of the process tree so far)."""
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()

    def start(self) -> float:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started_at = time.monotonic()
        self.samples, self.cpu_samples = [], []
        self._stop_sampling.clear()
        self._sampler = threading.Thread(target=self._sample, name=f"rss-{self.name}", daemon=True)
        self._sampler.start()
        return self.started_at

    def _sample(self) -> None:
        assert self.proc is not None
        try:
            process = psutil.Process(self.proc.pid)
            while not self._stop_sampling.is_set():
                rss = process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                now = time.monotonic()
                self.samples.append((now, rss))
                self.cpu_samples.append((now, _cpu_seconds(process)))
                self._stop_sampling.wait(SAMPLE_EVERY_S)
        except psutil.Error:
            return  # it exited

    def peak_rss(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((rss for t, rss in list(self.samples) if since <= t <= until), default=0)

    def cpu_used(self, since: float, until: float) -> tuple[float, float] | None:
        """(CPU seconds the process tree used, seconds of wall time) between the first and the
        last sample inside two monotonic times (samples are 0.2 s apart)."""
        inside = [(t, cpu) for t, cpu in list(self.cpu_samples) if since <= t <= until]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return inside[-1][1] - inside[0][1], inside[-1][0] - inside[0][0]

    def rss(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"{self.name} exited with {code}; last log lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20) -> float:
        """SIGTERM, then SIGKILL after `timeout_s`; returns how long the stop took."""
        started = time.monotonic()
        self._stop_sampling.set()
        if self.proc is None:
            return 0.0
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Whatever the worker started in its session goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._sampler is not None:
            self._sampler.join(2)
        return time.monotonic() - started
