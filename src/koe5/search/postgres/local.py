"""A PostgreSQL 16 + pgvector server of your own, from the ``pgserver`` wheel (``koe5[postgres]``).

For trying the PostgreSQL store without a database at hand, and for koe5's tests and benchmarks: the
wheel carries the server binaries and the pgvector extension, so nothing else is installed. PostgreSQL
refuses to run as root; when run by root, the server runs as an unprivileged system user
(:data:`OS_USER`, created on first use) that owns the data folder.

Example::

    from koe5.search.postgres.local import LocalPostgres

    with LocalPostgres("/tmp/koe5-pg") as pg:          # initdb on first use, then pg_ctl start
        url = pg.url("manuals")                         # postgresql://koe5@127.0.0.1:PORT/koe5?index=manuals
        ...
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from koe5.errors import Koe5Error

#: The system user a root-started server runs as.
OS_USER = "koe5pg"
#: The database role and database the server is made with (trusted on 127.0.0.1 and its socket only).
ROLE = "koe5"


class LocalServerError(Koe5Error):
    """The local server could not be set up or started (the message says which step and why)."""


def binaries() -> Path:
    """The ``bin`` folder of the PostgreSQL in the pgserver wheel."""
    import importlib.util

    # found, not imported: importing pgserver sets up directories and warnings koe5 does not use
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError("a local PostgreSQL needs the pgserver wheel: pip install 'koe5[postgres]'")
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (found / "pg_ctl").exists():
        raise LocalServerError(f"{found}: the pgserver wheel has no PostgreSQL binaries")
    return found


class LocalPostgres:
    """A server over ``data_dir`` listening on 127.0.0.1:``port`` (a free one by default) and a socket
    in ``data_dir``; :meth:`start` makes the cluster on first use, :meth:`stop` shuts it down fast."""

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        self.root = Path(data_dir).absolute()
        self.data = self.root / "data"
        self.port = port or _free_port()
        self._as_user: list[str] = []
        self._temporary = False  # the cluster moved to a temporary folder of its own

    def url(self, index: str | None = None, database: str = ROLE) -> str:
        base = f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"
        return f"{base}?index={index}" if index else base

    def start(self) -> LocalPostgres:
        bin_dir = binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", _os_user(), "--"]
            self._move_within_reach()
            bin_dir = self._reachable(bin_dir)
            shutil.chown(self.root, OS_USER, OS_USER)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)  # an initdb that was cut short
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    ROLE,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                "initdb",
            )
        options = f"-k {self.root} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off"
        log = self.root / "server.log"
        self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
            log,
        )
        self._bin = bin_dir
        self._run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, ROLE],
            "createdb",
            ok_if="already exists",
        )
        return self

    def stop(self) -> None:
        if getattr(self, "_bin", None) is not None:
            self._run(
                [str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], "pg_ctl stop"
            )
            self._bin = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove_temporary()

    def remove_temporary(self) -> None:
        """Remove the cluster if it was moved to a temporary folder (``data_dir`` itself is kept)."""
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, cmd: list[str], step: str, log: Path | None = None, ok_if: str | None = None) -> None:
        done = subprocess.run(self._as_user + cmd, capture_output=True, text=True, cwd=self.root)
        if done.returncode and not (ok_if and ok_if in done.stderr):
            detail = (done.stderr or done.stdout).strip()
            if log is not None and log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            raise LocalServerError(f"{step} failed (exit {done.returncode}): {detail}")

    def _move_within_reach(self) -> None:
        """Keep the cluster in ``data_dir`` if the server's user can reach it, else in a folder of
        its own under the temporary directory (``self.root`` then names it)."""
        if self._can(["test", "-x", str(self.root)]):
            return
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="koe5-postgres-"))
        self.data = self.root / "data"
        self._temporary = True

    def _can(self, cmd: list[str]) -> bool:
        return subprocess.run([*self._as_user, *cmd], capture_output=True).returncode == 0

    def _reachable(self, bin_dir: Path) -> Path:
        """The binaries where the server's user can run them: in place, or a copy beside the data."""
        if self._can([str(bin_dir / "pg_ctl"), "--version"]):
            return bin_dir
        copy = self.root / "pginstall"
        if not (copy / "bin" / "pg_ctl").exists():
            shutil.copytree(bin_dir.parent, copy, symlinks=True, dirs_exist_ok=True)
        return copy / "bin"


def _os_user() -> str:
    """The unprivileged user a root-started server runs as, created (a system user, no login) if absent."""
    import pwd

    try:
        pwd.getpwnam(OS_USER)
        return OS_USER
    except KeyError:
        pass
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
        capture_output=True,
        text=True,
    )
    if done.returncode and "already exists" not in done.stderr:
        raise LocalServerError(f"cannot create the user {OS_USER!r} to run PostgreSQL as: {done.stderr}")
    return OS_USER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
