"""A throwaway PostgreSQL cluster for tests: ``PostgresCluster`` plus the pytest fixtures on it.

It runs Debian's own server binaries (``/usr/lib/postgresql/<major>/bin``): ``initdb`` in a temp dir,
a free port, listening on 127.0.0.1 only, its unix socket in the temp dir, ``fsync`` on (the store's
durability is what the tests check, so the database must really flush).  PostgreSQL refuses to run
as root, so when this process is root the server runs as Debian's ``postgres`` system user (the temp
dir is chowned to it) through ``setpriv``.  Connections from 127.0.0.1 use trust auth for the
superuser ``amqp`` that ``initdb`` creates, so the DSNs carry no password.

``stop()``/``start()``/``restart()`` keep the same data dir and port, for tests that take the
database away under a running broker.  Where PostgreSQL is not installed the fixtures fail under
CI (``CI=true``) and skip elsewhere, naming what to install (as ``test_other_languages`` does).

Usable from ``interop_tests`` too: ``pytest_plugins = ["tests.postgres_cluster"]`` in a test module
brings the fixtures in (``postgres_cluster``, ``postgres_dsn``, ``postgres_db``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "amqp"
START_TIMEOUT = 60.0  # seconds for the server to accept connections (initdb + start on a busy 2-core box)


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin dir, or None when no server package is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def missing_postgres() -> None:
    """Skip (fail under CI) the calling test: there is no PostgreSQL server to run."""
    message = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does this)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL server on a temp data dir; ``dsn(dbname)`` to connect, ``close()`` removes it all."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or server_bin_dir()
        if found is None:
            raise FileNotFoundError("no PostgreSQL server in /usr/lib/postgresql/*/bin")
        self.bin_dir = found
        self.root = Path(tempfile.mkdtemp(prefix="amqp-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.socket_dir.mkdir()
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._initdb()

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        # setpriv execs (runuser forks and keeps SIGINT from the server), so signals reach postgres itself
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        return [*as_postgres, *command] if self._as_postgres else command

    def _initdb(self) -> None:
        subprocess.run(
            self._command(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"
            ),
            check=True,
            capture_output=True,
        )
        with open(self.data_dir / "pg_hba.conf", "w") as hba:  # trust on the socket and 127.0.0.1 only
            hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (same data dir and port) and wait until it accepts connections."""
        if self.running:
            return
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the server writes it while it runs
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        options = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        self._process = subprocess.Popen(
            self._command("postgres", "-D", str(self.data_dir), *options),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"postgres exited at start; its log:\n{self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections in {START_TIMEOUT} s; its log:\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (SIGINT: roll back, checkpoint) or ``immediate`` (SIGQUIT: crash-like)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal({"smart": 15, "fast": 2, "immediate": 3}[mode])
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a cheap copy of template1) and return its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one SQL command as the superuser over the unix socket; its unaligned output."""
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            + ["-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "postgres.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def close(self) -> None:
        """Stop the server and delete its data dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One running cluster for the whole session (skip/fail as ``missing_postgres`` says without one)."""
    if server_bin_dir() is None:
        missing_postgres()
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: PostgresCluster) -> str:
    """The DSN of the session cluster's ``postgres`` database (superuser, trust auth on 127.0.0.1)."""
    return postgres_cluster.dsn()


@pytest.fixture
def postgres_db(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh empty database for this test, dropped after it; its DSN."""
    if not postgres_cluster.running:  # a test that stopped the cluster and failed before starting it again
        postgres_cluster.start()
    dsn = postgres_cluster.create_database()
    yield dsn
    if postgres_cluster.running:
        postgres_cluster.drop_database(dsn)
