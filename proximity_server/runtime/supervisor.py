"""Run several server processes on one port: ``python run.py --workers N``.

The supervisor (the parent process) starts N workers, each a fresh
``python run.py --worker-of <supervisor pid> --worker-index I`` that binds the
same host and port with SO_REUSEPORT, so the kernel spreads new connections
over them. Workers share nothing in memory: sessions, sockets' events, rate
limits and counters all go through Redis and PostgreSQL, so any worker serves
any client.

The supervisor

* restarts a worker that exits or dies, after a backoff that doubles with each
  quick failure of that slot (``RESTART_BACKOFF_INITIAL`` up to
  ``RESTART_BACKOFF_MAX``; reset once a worker has stayed up
  ``RESTART_BACKOFF_RESET`` seconds), logging each exit and restart;
* on SIGTERM or SIGINT, sends SIGTERM to every worker (which then closes its
  sockets with 1001 and flushes its counters), waits for them up to
  ``shutdown_grace_seconds`` + ``SHUTDOWN_MARGIN_SECONDS``, SIGKILLs the
  stragglers and returns; a second signal kills the workers at once.

Workers run in their own process group, so a Ctrl-C in a terminal reaches
only the supervisor, which forwards it once. A worker whose supervisor
disappears (SIGKILL) stops itself (``watch_supervisor``).

Metrics: the workers share one directory for their figures
(``PROMETHEUS_MULTIPROC_DIR``, see proximity_server/runtime/metrics.py), emptied
when the supervisor starts (``shared_metrics_dir``); when a worker exits,
its live gauges are dropped from it (``mark_process_dead``), its counts stay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger("proximity_server.supervisor")

RESTART_BACKOFF_INITIAL = 0.5
RESTART_BACKOFF_MAX = 30.0
RESTART_BACKOFF_RESET = 30.0
SHUTDOWN_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.05
SUPERVISOR_CHECK_SECONDS = 1.0


def worker_count(value: str) -> int:
    """Parse ``--workers``: a positive count, or ``0``/``auto`` for one per usable core."""
    if value.strip().lower() in ("0", "auto"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--workers must be a number or 'auto', got {value!r}") from None
    if count < 0:
        raise ValueError(f"--workers must not be negative, got {count}")
    return count


def worker_command(index: int, host: str, port: int, supervisor_pid: int | None = None) -> list[str]:
    """The command line of worker ``index``: this interpreter re-running run.py."""
    run_py = Path(__file__).resolve().parents[2] / "run.py"
    return [
        sys.executable,
        str(run_py),
        "--worker-of",
        str(os.getpid() if supervisor_pid is None else supervisor_pid),
        "--worker-index",
        str(index),
        "--host",
        host,
        "--port",
        str(port),
    ]


def watch_supervisor(supervisor_pid: int, interval: float = SUPERVISOR_CHECK_SECONDS) -> threading.Thread:
    """In a worker: SIGTERM ourselves (a graceful stop) once the supervisor is gone.

    A worker's parent is the supervisor; when the supervisor dies without
    stopping its workers (SIGKILL), the worker is re-parented and notices."""

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(interval)
        log.warning("supervisor is gone, stopping", extra={"supervisor_pid": supervisor_pid})
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="watch-supervisor", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def shared_metrics_dir(configured: str | None) -> Iterator[Path]:
    """The workers' metrics directory: ``configured`` (emptied of an earlier
    run's files), or a new temporary one, removed afterwards."""
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="proximity-metrics-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Keeps ``workers`` processes running until told to stop (see the module docstring)."""

    def __init__(
        self,
        workers: int,
        command: Callable[[int], Sequence[str]],
        env: Mapping[str, str],
        shutdown_grace_seconds: float,
        *,
        cwd: str | Path | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("at least one worker is needed")
        self._slots = [_Slot(index) for index in range(workers)]
        self._command = command
        self._env = dict(env)
        self._cwd = cwd
        self._metrics_dir = metrics_dir
        self._stop_deadline = shutdown_grace_seconds + SHUTDOWN_MARGIN_SECONDS
        self._signals_received = 0

    def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT.

        Returns 0 when every worker stopped cleanly within the deadline, else 1."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._start(slot)
            while not self._signals_received:
                self._check()
                time.sleep(POLL_SECONDS)
            return self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def pids(self) -> list[int]:
        return [slot.proc.pid for slot in self._slots if slot.proc is not None and slot.proc.poll() is None]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals_received += 1
        if self._signals_received > 1:
            # Impatient second Ctrl-C: no more waiting.
            self._signal_all(signal.SIGKILL)

    def _start(self, slot: _Slot) -> None:
        slot.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and run.py)
            list(self._command(slot.index)),
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            process_group=0,  # Ctrl-C reaches the supervisor only; it forwards it
        )
        slot.started_at = time.monotonic()
        log.info("worker started", extra={"worker_index": slot.index, "worker_pid": slot.proc.pid})

    def _check(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.proc is None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            uptime = now - slot.started_at
            if uptime >= RESTART_BACKOFF_RESET:
                slot.quick_failures = 0
            slot.quick_failures += 1
            delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_INITIAL * 2 ** (slot.quick_failures - 1))
            log.warning(
                "worker exited, restarting",
                extra={
                    "worker_index": slot.index,
                    "worker_pid": slot.proc.pid,
                    "exit": _describe_exit(code),
                    "uptime_seconds": round(uptime, 3),
                    "restart_in_seconds": delay,
                },
            )
            self._mark_dead(slot.proc.pid)
            slot.proc = None
            slot.restart_at = now + delay

    def _mark_dead(self, pid: int) -> None:
        """Drop a gone worker's live gauges from the scrapes (its counts stay)."""
        if self._metrics_dir is not None:
            try:
                mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
            except OSError as exc:
                log.warning("could not drop a gone worker's gauges", extra={"worker_pid": pid, "error": repr(exc)})

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self._slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, sig)

    def _stop(self) -> int:
        log.info("stopping workers", extra={"workers": self.pids, "deadline_seconds": self._stop_deadline})
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_deadline
        running = [slot for slot in self._slots if slot.proc is not None]
        while time.monotonic() < deadline and any(slot.proc.poll() is None for slot in running if slot.proc):
            time.sleep(POLL_SECONDS)
        clean = True
        for slot in running:
            assert slot.proc is not None
            if slot.proc.poll() is None:
                log.error(
                    "worker did not stop in time, killing it",
                    extra={"worker_index": slot.index, "worker_pid": slot.proc.pid},
                )
                slot.proc.kill()
                slot.proc.wait()
                clean = False
            elif slot.proc.returncode == -signal.SIGTERM:
                # Killed by the SIGTERM itself: it was still starting and had
                # not set up its handler yet, so it held nothing to finish.
                log.info("worker stopped while starting", extra={"worker_index": slot.index})
            elif slot.proc.returncode != 0:
                log.warning(
                    "worker stopped with an error",
                    extra={"worker_index": slot.index, "exit": _describe_exit(slot.proc.returncode)},
                )
                clean = False
        log.info("all workers stopped", extra={"clean": clean})
        return 0 if clean else 1


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
