"""Where SQLite work meets the limits of the process: the work budget of one read, and every
failure (full disk, no file descriptor left, a lock held too long) mapped to a clean 503.
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
import time

from memtrace.domain.errors import OutOfDescriptors, StorageUnavailable


def out_of_descriptors() -> bool:
    """True when this process is (nearly) at its open-file limit (Linux; else False)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft != resource.RLIM_INFINITY and len(os.listdir("/proc/self/fd")) >= soft - 4
    except OSError:
        return True  # listing the fds needs one: that failing is the answer
    except Exception:
        return False


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (as Go programs do at
    start): every open store and every connection holds descriptors. Returns the soft limit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard and (soft != resource.RLIM_INFINITY):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    except (OSError, ValueError):
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return int(soft)


def storage_error(exc: BaseException) -> StorageUnavailable:
    """Map an SQLite (or file system) failure to a clean 503; the message never carries data
    or secrets."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return OutOfDescriptors()
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return StorageUnavailable(f"storage cannot be opened ({reason})")
    if isinstance(exc, RuntimeError):  # "can't start new thread"
        return StorageUnavailable("storage cannot be opened: the server cannot start a thread")
    code = getattr(exc, "sqlite_errorname", None) or ""
    if code.startswith("SQLITE_CANTOPEN") or text == "unable to open database file":
        if out_of_descriptors():
            return OutOfDescriptors()
        return StorageUnavailable(
            "storage cannot be opened (unable to open database file: check that the data "
            "directory exists and is writable)"
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StorageUnavailable("storage is busy (database locked); retry shortly")
    if code.startswith("SQLITE_FULL"):
        return StorageUnavailable(
            "storage is full (no space left on the disk, or the database size limit is "
            "reached); nothing was written"
        )
    if code.startswith("SQLITE_IOERR"):
        return StorageUnavailable(
            f"storage write failed ({text}: the disk may be full or failing); nothing was written"
        )
    return StorageUnavailable(f"storage error: {text}")


class ScanBudget:
    """The work one read may do: ``cpu_s`` seconds of its thread's CPU time (and, as a
    backstop for reads waiting on a slow disk, ten times that in wall time).

    Installed as SQLite's progress handler, it interrupts the statement once spent; the read
    then answers with the rows it has (``spent`` is set). CPU time rather than rows: a row may
    be 100 bytes or 64 KiB, and CPU is what one org's read takes from the others.
    """

    STEPS = 2000  # SQLite VM instructions between checks (~20-100 us of work)

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s
        self.spent = False
        self._cpu0 = 0.0
        self._wall_end = 0.0

    def start(self) -> None:
        self.spent = False
        self._cpu0 = time.thread_time()
        self._wall_end = time.monotonic() + 10 * self.cpu_s

    def check(self) -> int:
        """SQLite's progress callback: non-zero interrupts the running statement."""
        if time.thread_time() - self._cpu0 > self.cpu_s or time.monotonic() > self._wall_end:
            self.spent = True
            return 1
        return 0
