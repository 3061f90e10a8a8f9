"""Processes of the throwaway PostgreSQL server (:mod:`memtrace.testing.postgres`): the
binaries, the OS user it runs as, the initdb cache, start, stop and reaping."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "memtrace-pg-"
_INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: `apt-get install -y postgresql-15` or "
    "`postgresql`; it brings initdb, pg_ctl, postgres, psql and the pg_trgm extension), or set "
    "MEMTRACE_PG_BIN to the directory holding initdb/pg_ctl/postgres"
)


class PostgresUnavailable(RuntimeError):
    """The server binaries, the pg_trgm extension or the service user are missing."""


# --------------------------------------------------------------------------------------------
# Binaries and the OS user
# --------------------------------------------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/15/bin -> "15"
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def find_bindir() -> Path:
    """The directory with initdb, pg_ctl and postgres, or :class:`PostgresUnavailable`."""
    if env := os.environ.get("MEMTRACE_PG_BIN"):  # explicit: only this directory
        bindir = Path(env)
        tools = ("initdb", "pg_ctl", "postgres")
        missing = [t for t in tools if not os.access(bindir / t, os.X_OK)]
        if missing:
            raise PostgresUnavailable(
                f"MEMTRACE_PG_BIN={env} has no executable {', '.join(missing)}; " + _INSTALL_HINT
            )
        return bindir
    candidates: list[Path] = []
    candidates += [
        Path(p)
        for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    ]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, PATH"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (looked in: {looked}); "
        + _INSTALL_HINT
    )


@dataclass(frozen=True)
class RunAs:
    """Who runs the server: the postgres user when we are root, else ourselves."""

    uid: int
    gid: int
    name: str
    home: str

    @classmethod
    def pick(cls, os_user: str) -> RunAs:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
        try:
            entry = pwd.getpwnam(os_user)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and PostgreSQL refuses to run as root, but there is no "
                f"{os_user!r} system user to run it as; {_INSTALL_HINT} (it creates that user), "
                f"or `useradd --system {os_user}`"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)

    @property
    def switching(self) -> bool:
        return self.uid != os.geteuid()

    def chown_tree(self, root: Path) -> None:
        if not self.switching:
            return
        os.chown(root, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)

    def run(
        self, argv: list[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
        }
        proc = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd="/",
            check=False,
            user=self.uid if self.switching else None,
            group=self.gid if self.switching else None,
            extra_groups=[] if self.switching else None,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc


# --------------------------------------------------------------------------------------------
# initdb cache
# --------------------------------------------------------------------------------------------

initdb_args: tuple[str, ...] = (
    "--no-sync",
    "-A",
    "trust",
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--locale=C",
)


def _server_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "-V"], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout.strip()


def check_extensions(bindir: Path, extensions: tuple[str, ...]) -> None:
    if not extensions:
        return
    sharedir = None
    if (bindir / "pg_config").exists():
        with contextlib.suppress(Exception):
            sharedir = subprocess.run(
                [str(bindir / "pg_config"), "--sharedir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
    if not sharedir:  # Debian layout: /usr/lib/postgresql/15/bin -> /usr/share/postgresql/15
        sharedir = f"/usr/share/postgresql/{bindir.parent.name}"
    for ext in extensions:
        if not Path(sharedir, "extension", f"{ext}.control").exists():
            raise PostgresUnavailable(
                f"PostgreSQL extension {ext!r} not found in {sharedir}/extension; on Debian it "
                "ships with the server package (postgresql-15; postgresql-contrib on older "
                "releases)"
            )


def initdb_cached(bindir: Path, runas: RunAs, cache_root: Path) -> Path:
    """A pristine initdb'd data dir for this server version, made once and reused."""
    tag = hashlib.sha256(
        f"{_server_version(bindir)}|{' '.join(initdb_args)}|{runas.uid}".encode()
    ).hexdigest()[:16]
    cache_root.mkdir(mode=0o755, exist_ok=True)
    target = cache_root / f"initdb-{tag}"
    if (target / "PG_VERSION").exists():
        return target
    lock_path = cache_root / f"initdb-{tag}.lock"
    with open(lock_path, "w") as lock:  # several test processes (xdist) may race here
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "PG_VERSION").exists():
            return target
        building = Path(tempfile.mkdtemp(prefix=f"initdb-{tag}-", dir=cache_root))
        building.chmod(0o755)
        runas.chown_tree(building)
        initdb = [str(bindir / "initdb"), "-D", str(building / "data"), *initdb_args]
        runas.run(initdb, timeout=120)
        os.replace(building / "data", target)  # atomic: readers see all or nothing
        shutil.rmtree(building, ignore_errors=True)
    return target


def postmaster_pid(datadir: Path) -> int | None:
    try:
        return int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    bindir: Path, runas: RunAs, root: Path, *, timeout: float
) -> subprocess.Popen[bytes]:
    """Start ``postgres`` as *our* child (not via ``pg_ctl start``) and wait until it is ready.

    Being the parent lets us reap it: on machines whose PID 1 does not reap orphans (this one),
    a postmaster started by pg_ctl and killed stays a zombie, and PostgreSQL then takes the
    zombie's PID in ``postmaster.pid`` for a live server and refuses to restart.
    """
    datadir = root / "data"
    log = open(root / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(datadir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd="/",
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": runas.home,
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
        },
        start_new_session=True,  # its own process group: SIGKILL of the group takes all
        user=runas.uid if runas.switching else None,
        group=runas.gid if runas.switching else None,
        extra_groups=[] if runas.switching else None,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = (root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"postgres exited with {proc.returncode} while starting:\n{tail}")
        try:  # line 8 of postmaster.pid is the status: "ready" once it accepts connections
            lines = (datadir / "postmaster.pid").read_text().splitlines()
            ours = len(lines) >= 8 and lines[0].strip() == str(proc.pid)
            if ours and lines[7].strip() == "ready":
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"postgres not ready after {timeout:.0f}s; see {root}/server.log")
        time.sleep(0.01)


def stop_cluster(bindir: Path, runas: RunAs, root: Path) -> None:
    datadir = root / "data"
    pid = postmaster_pid(datadir)
    if pid and alive(pid):
        for mode, wait in (("fast", 30), ("immediate", 10)):
            proc = runas.run(
                [str(bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", mode, "-w",
                 "-t", str(wait)],
                timeout=wait + 10,
                check=False,
            )  # fmt: skip
            if proc.returncode == 0 or not (datadir / "postmaster.pid").exists():
                break
        else:
            pid = postmaster_pid(datadir)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # postmaster leads its own group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


def reap_stale(bindir: Path, runas: RunAs, base: Path) -> None:
    """Stop and remove clusters whose owning process is gone (it was SIGKILLed)."""
    for owner_file in base.glob(f"{PREFIX}*/owner.pid"):
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        stop_cluster(bindir, runas, owner_file.parent)


def default_base(fsync: bool) -> Path:
    """tmpfs (/dev/shm) for fsync-off clusters when it has room: this VM's ext4 made every
    file-creating step (CREATE DATABASE, the data dir copy) 3-10x slower. Else the temp dir."""
    env = os.environ.get("MEMTRACE_PG_TMP")
    if env:
        return Path(env)
    shm = Path("/dev/shm")  # noqa: S108 (a private mkdtemp dir is made inside it)
    if not fsync and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        with contextlib.suppress(OSError):
            st = os.statvfs(shm)
            if st.f_bavail * st.f_frsize > 4 * 1024**3:
                return shm
    return Path(tempfile.gettempdir())
