"""A throwaway PostgreSQL server for tests and benchmarks (the real server, never a mock).

``start_postgres()`` finds the server binaries (``MEMTRACE_PG_BIN``, else the newest
``/usr/lib/postgresql/<v>/bin``, else ``initdb`` on ``PATH``; :class:`PostgresUnavailable` with
an install hint when missing), copies a cached ``initdb`` (made once per machine and version),
starts ``postgres`` on 127.0.0.1 (a free port) and a unix socket, and creates a login role and a
database with ``pg_trgm``. As root it runs the server as the ``postgres`` system user
(PostgreSQL refuses root). ``stop()`` shuts it down and removes the directory; an ``atexit``
hook stops what a run forgot, and clusters of a SIGKILLed owner are reaped by the next start.
About 0.35 s per start with the cache warm (tmpfs when fsync is off and it has room).

Standard library only (tests/conftest.py and bench/ use it; nothing of the project).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from memtrace.testing.pg_process import (
    PREFIX,
    PostgresUnavailable,
    RunAs,
    alive,
    check_extensions,
    children,
    default_base,
    find_bindir,
    free_port,
    initdb_args,
    initdb_cached,
    postmaster_pid,
    reap_stale,
    start_server,
    stop_cluster,
)

__all__ = ["PgServer", "PostgresUnavailable", "find_bindir", "start_postgres"]


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_live: set[PgServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


@dataclass(eq=False)
class PgServer:
    """A running throwaway cluster. ``url`` is for the app role; ``admin_url`` for postgres."""

    bindir: Path
    root: Path  # temp dir: data/, sock/, server.log
    port: int
    user: str
    password: str | None
    dbname: str
    startup_s: float
    fsync: bool
    _runas: RunAs = field(repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    host = "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url_for(self, dbname: str | None = None, *, user: str | None = None) -> str:
        user = user or self.user
        auth = quote(user, safe="")
        if self.password and user == self.user:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname or self.dbname)}"

    @property
    def url(self) -> str:
        return self.url_for()

    @property
    def admin_url(self) -> str:
        """Superuser over the unix socket (trust), for the harness and for tests that need it."""
        return (
            f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}&port={self.port}"
        )

    def psql(
        self, sql: str, *, dbname: str = "postgres", user: str = "postgres", timeout: float = 60
    ) -> str:
        """Run SQL over the unix socket (as the superuser unless ``user``); unaligned output."""
        proc = self._runas.run(
            [
                str(self.bindir / "psql"),
                "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-p", str(self.port), "-U", user,
                "-d", dbname, "-c", sql,
            ],
            timeout=timeout,
        )  # fmt: skip
        return proc.stdout.strip()

    def create_database_sql(self, name: str, *, template: str | None = None) -> str:
        """The ``CREATE DATABASE`` statement :meth:`create_database` runs (for a driver).

        ``STRATEGY FILE_COPY`` when fsync is off: it copies the template's files and forces a
        checkpoint, which is nearly free without fsync (~50-100 ms here), where PG 15's
        default ``WAL_LOG`` writes the whole template through WAL (~250 ms here). With fsync
        on, WAL_LOG avoids the checkpoint's fsyncs. The template must have no other
        connections while it is copied.
        """
        sql = f"CREATE DATABASE {_ident(name)} OWNER {_ident(self.user)}"
        if template:
            sql += f" TEMPLATE {_ident(template)}"
        if not self.fsync:
            sql += " STRATEGY FILE_COPY"
        return sql

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """``CREATE DATABASE name [TEMPLATE t]`` owned by the app role; returns its URL."""
        self.psql(self.create_database_sql(name, template=template))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    def is_running(self) -> bool:
        if self._stopped:
            return False
        proc = self._runas.run(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.datadir)],
            timeout=10,
            check=False,
        )
        return proc.returncode == 0

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children, like a crash of the database host
        (minus the OS page cache); the data dir stays. Then :meth:`restart` runs recovery."""
        pid = postmaster_pid(self.datadir)
        if not pid:
            return
        kids = children(pid)
        for victim in (pid, *kids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=10)  # reap: no zombie holding the PID in postmaster.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in kids):
            time.sleep(0.02)

    def restart(self) -> None:
        """Start again on the same port and data (after :meth:`kill`): crash recovery."""
        self._proc = start_server(self.bindir, self._runas, self.root, timeout=60)

    def stop(self) -> None:
        """Stop (fast shutdown: open sessions are disconnected) and delete the directory."""
        if self._stopped:
            return
        self._stopped = True
        with _live_lock:
            _live.discard(self)
        stop_cluster(self.bindir, self._runas, self.root)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def start_postgres(
    *,
    fsync: bool = False,
    password: str | None = None,
    user: str = "memtrace",
    dbname: str = "memtrace",
    superuser: bool = False,
    extensions: tuple[str, ...] = ("pg_trgm",),
    shared_buffers: str = "128MB",
    max_connections: int = 100,
    settings: Mapping[str, str | int | float | bool] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    os_user: str = "postgres",
    use_initdb_cache: bool = True,
    timeout: float = 60.0,
) -> PgServer:
    """Start a throwaway cluster and return it (use as a context manager or call ``stop()``).

    Args:
        fsync: ``False`` (default) is fast and safe against process crashes — acknowledged
            commits survive ``kill -9`` of the server or the app (synchronous_commit stays on)
            — but not OS crashes; pass ``True`` for durability tests that must measure real
            fsync cost (also turns on ``full_page_writes``).
        password: ``None`` for trust auth on TCP; a string to require SCRAM for TCP logins.
        superuser: make the app role a superuser (default: CREATEDB only, like production).
        settings: extra ``postgresql.conf`` settings, e.g. ``{"max_locks_per_transaction": 256}``.
        base_dir: where the temp dir goes (default: ``MEMTRACE_PG_TMP``, else /dev/shm when
            ``fsync`` is off and it has > 4 GiB free, else the system temp dir); it must be
            traversable by the ``postgres`` user when running as root. Pass a disk path for
            benchmarks whose data should not live in RAM.
    """
    t0 = time.perf_counter()
    bindir = find_bindir()
    check_extensions(bindir, extensions)
    runas = RunAs.pick(os_user)
    base = Path(base_dir) if base_dir else default_base(fsync)
    reap_stale(bindir, runas, base)

    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    try:
        root.chmod(0o755)
        (root / "owner.pid").write_text(str(os.getpid()))
        if use_initdb_cache:
            pristine = initdb_cached(bindir, runas, base / "memtrace-pg-cache")
            # cp -a: ~0.1 s for the ~40 MB / ~1,000 files (shutil.copytree took ~1 s here)
            subprocess.run(
                ["cp", "-a", "--reflink=auto", str(pristine), str(root / "data")],
                check=True,
                timeout=120,
                capture_output=True,
            )
        else:
            (root / "data").mkdir(mode=0o700)
        (root / "sock").mkdir(mode=0o755)
        runas.chown_tree(root)
        if not use_initdb_cache:
            runas.run([str(bindir / "initdb"), "-D", str(root / "data"), *initdb_args], timeout=120)
        (root / "data").chmod(0o700)

        conf: dict[str, str | int | float | bool] = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(root / "sock"),
            "max_connections": max_connections,
            "shared_buffers": shared_buffers,
            "fsync": fsync,
            # always on: with fsync off a commit still write()s its WAL to the OS before it is
            # acknowledged, so SIGKILL of the server loses nothing acknowledged (off would
            # lose up to ~0.6 s of acknowledged commits — seen in the restart test)
            "synchronous_commit": True,
            "full_page_writes": fsync,
            "max_wal_size": "2GB",  # bulk loads without checkpoint storms
            "checkpoint_timeout": "15min",
            "wal_level": "minimal" if not fsync else "replica",
            "max_wal_senders": 0,
            "logging_collector": False,
            "log_min_messages": "warning",
            "log_statement": "none",
            "timezone": "UTC",
            "lc_messages": "C",
        }
        conf.update(settings or {})
        auth = "scram-sha-256" if password else "trust"
        (root / "data" / "pg_hba.conf").write_text(
            f"local all all trust\nhost all all 127.0.0.1/32 {auth}\nhost all all ::1/128 {auth}\n"
        )
        last_error: Exception | None = None
        for _attempt in range(5):  # the free port may be taken between probe and bind
            port = free_port()
            conf["port"] = port
            (root / "data" / "postgresql.auto.conf").write_text(
                "".join(f"{k} = {_conf_value(v)}\n" for k, v in conf.items())
            )
            runas.chown_tree(root / "data")
            try:
                proc = start_server(bindir, runas, root, timeout=timeout)
                break
            except RuntimeError as exc:
                log = (
                    (root / "server.log").read_text(errors="replace")
                    if (root / "server.log").exists()
                    else ""
                )
                if "already in use" not in log and "could not bind" not in log:
                    raise
                last_error = exc
        else:
            raise RuntimeError(f"no free port after 5 tries: {last_error}")

        server = PgServer(
            bindir=bindir,
            root=root,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            startup_s=0.0,
            fsync=fsync,
            _runas=runas,
            _proc=proc,
        )
        with _live_lock:
            _live.add(server)
        role = f"CREATE ROLE {_ident(user)} LOGIN " + ("SUPERUSER" if superuser else "CREATEDB")
        if password:
            role += f" PASSWORD {_literal(password)}"
        statements = [role]
        statements += [f"CREATE EXTENSION IF NOT EXISTS {_ident(e)}" for e in extensions]
        server.psql("; ".join(statements), dbname="template1")  # role + template1 extensions
        server.psql(server.create_database_sql(dbname))
        server.startup_s = time.perf_counter() - t0
        return server
    except BaseException:
        stop_cluster(bindir, runas, root)
        raise


def _conf_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return _literal(value)


@contextlib.contextmanager
def postgres(**kwargs: Any) -> Iterator[PgServer]:
    """``with postgres() as pg:`` — same arguments as :func:`start_postgres`."""
    server = start_postgres(**kwargs)
    try:
        yield server
    finally:
        server.stop()
