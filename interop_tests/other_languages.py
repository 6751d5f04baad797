"""Build and run the client programs in other languages (Go, Node.js, Java) against a broker.

Each program lives under ``interop_tests/clients/`` and takes ``AMQP_URL PREFIX [flagged]``; it
prints "ok NAME" per scenario and "done", or "FAIL NAME: error" and exits 1.  The fixtures here
build a program once per session (or check that its toolchain is there); a missing toolchain fails
the test under CI (``CI=true``) and skips it elsewhere, naming what to install.  Test modules import
the fixtures they use (``from .other_languages import go_client``), as pytest only sees fixtures
defined or imported in the module or a conftest.

``flagged_broker`` is a broker of its own for the scenarios that need flags: an amqps listener
(certificates from ``trustme``) and a data dir on a small tmpfs with ``--disk-free-limit`` just
below its free space, so that a client writing ``DISK_FILLER_BYTES`` to ``DISK_FILLER`` raises the
disk alarm and deleting the file ends it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from tests.small_disk import free, mounted_tmpfs

from .broker_process import BrokerProcess

CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_DIR = CLIENTS / "node"
GO_DIR = CLIENTS / "go" / "amqp091"
JAVA_DIR = CLIENTS / "java"
GOPATH = Path("/usr/share/gocode")  # where Debian's Go library packages put their sources
AMQP091_SOURCE = GOPATH / "src" / "github.com" / "rabbitmq" / "amqp091-go"
# Debian's librabbitmq-client-java (RabbitMQ's Java client) and the slf4j it logs through (nop: silent)
JAVA_CLASSPATH = [Path("/usr/share/java/amqp-client.jar"), Path("/usr/share/java/slf4j-api.jar")]
JAVA_RUNTIME_CLASSPATH = [*JAVA_CLASSPATH, Path("/usr/share/java/slf4j-nop.jar")]
RUN_TIMEOUT = 120.0  # one client program, all scenarios; each wait inside it gives up within 10 s
BUILD_TIMEOUT = 300.0
TMPFS_SIZE = 32 * 1024 * 1024
HEADROOM = 4 * 1024 * 1024  # --disk-free-limit sits this far below the tmpfs's free space at start
FILLER_SIZE = 8 * 1024 * 1024  # a client writing this much takes free space below the limit


# Builds already done in this pytest process, by what was built. A fixture imported into several test
# modules is a fixture of each (pytest keeps one cache per definition site, even at session scope), so
# without this each module importing java_client would compile the Java programs again (~3 s each).
_BUILT: dict[str, Path | list[str]] = {}


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed ({install}; .ci/run does this)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class StartedClient:
    """A client program running on a broker with a fresh name prefix; ``output`` waits for it."""

    def __init__(
        self,
        command: list[str],
        cwd: Path,
        broker: SimpleNamespace | str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        url = broker if isinstance(broker, str) else broker.url
        prefix = f"lang-{uuid.uuid4().hex[:10]}"
        self.command = command
        self.process = subprocess.Popen(
            [*command, url, prefix, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        """Its stdout, once it exited (it must exit 0, within ``RUN_TIMEOUT`` of this call)."""
        try:
            stdout, stderr = self.process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
            pytest.fail(f"{self.command[0]} did not finish in {RUN_TIMEOUT} s; output:\n{stdout}\n{stderr}")
        assert self.process.returncode == 0, stdout + stderr
        return stdout

    def stop(self) -> None:
        """Kill it if it still runs (a test that failed before collecting its output)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def run_client(
    command: list[str], cwd: Path, broker: SimpleNamespace | str, *args: str, env: dict[str, str] | None = None
) -> str:
    """Run one client program on ``broker`` (a fixture's namespace or an AMQP URL) with a fresh name
    prefix and ``args`` after it; its stdout (it must exit 0)."""
    return StartedClient(command, cwd, broker, *args, env=env).output()


def assert_scenarios_passed(stdout: str, scenarios: list[str]) -> None:
    lines = stdout.split("\n")
    assert lines[: len(scenarios) + 1] == [f"ok {name}" for name in scenarios] + ["done"], stdout


def _build(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    try:
        build = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{command[0]} did not finish in {BUILD_TIMEOUT} s:\n{error.stderr}")
    assert build.returncode == 0, build.stdout + build.stderr


def build_go_program(source_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the Go program in ``source_dir`` in GOPATH mode against Debian's Go packages (no module
    download); the binary's path. Skips (fails under CI) when Go or amqp091-go is missing."""
    if shutil.which("go") is None or not AMQP091_SOURCE.is_dir():
        missing("Go with amqp091-go", "apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev")
    built = _BUILT.get(str(source_dir))
    if isinstance(built, Path):
        return built
    binary = tmp_path_factory.mktemp("go-client") / source_dir.name
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(tmp_path_factory.mktemp("go-cache"))
    _build(["go", "build", "-o", str(binary), "."], source_dir, env)
    _BUILT[str(source_dir)] = binary
    return binary


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client program ``clients/go/amqp091``, built once per session."""
    return build_go_program(GO_DIR, tmp_path_factory)


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` binary, once the locked clients are installed in ``clients/node``."""
    path = shutil.which("node")
    if (
        path is None
        or not (NODE_DIR / "node_modules" / "amqplib").is_dir()
        or not (NODE_DIR / "node_modules" / "@cloudamqp" / "amqp-client").is_dir()
    ):
        missing(
            "Node.js with amqplib and @cloudamqp/amqp-client", f"apt-get install nodejs npm, then npm ci in {NODE_DIR}"
        )
    return path


@pytest.fixture(scope="session")
def java_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs ``clients/java/AmqpClient.java``, compiled once with plain javac against
    Debian's RabbitMQ Java client jar (no Maven: the jars come from the system)."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if java is None or javac is None or not all(jar.is_file() for jar in JAVA_RUNTIME_CLASSPATH):
        missing("A JDK with RabbitMQ's Java client", "apt-get install default-jdk-headless librabbitmq-client-java")
    built = _BUILT.get(str(JAVA_DIR))
    if isinstance(built, list):
        return built
    classes = tmp_path_factory.mktemp("java-client")
    sources = sorted(str(path) for path in JAVA_DIR.glob("*.java"))
    classpath = os.pathsep.join(str(jar) for jar in JAVA_CLASSPATH)
    _build([javac, "-d", str(classes), "-cp", classpath, *sources], JAVA_DIR, dict(os.environ))
    runtime = os.pathsep.join([str(classes), *(str(jar) for jar in JAVA_RUNTIME_CLASSPATH)])
    # a short-lived program: the C1 compiler alone starts it sooner than the full tiered JIT
    command = [java, "-XX:TieredStopAtLevel=1", "-cp", runtime, "AmqpClient"]
    _BUILT[str(JAVA_DIR)] = command
    return command


def _amqps_port(process: BrokerProcess, timeout: float = 10.0) -> int:
    """The port of the ``listening on HOST:PORT (amqps)`` line, which follows the plain one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(process.log):
            if line.startswith("amqp-server listening on ") and line.rstrip().endswith("(amqps)"):
                return int(line.split()[3].rsplit(":", 1)[1])
        time.sleep(0.02)
    raise AssertionError("no amqps listening line:\n" + "".join(process.log))


@pytest.fixture(scope="module")
def flagged_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A broker with an amqps listener and a disk alarm a client can raise; ``url``, ``env`` (what the
    "flagged" scenarios read: AMQPS_URL, AMQPS_CA, DISK_FILLER, DISK_FILLER_BYTES) and ``filler``."""
    base = tmp_path_factory.mktemp("flagged")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert, key = base / "ca.pem", base / "server.pem", base / "server.key"
    ca.cert_pem.write_to_path(ca_file)
    server.private_key_pem.write_to_path(key)
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    with mounted_tmpfs(base / "tmpfs", TMPFS_SIZE) as disk:
        data_dir = disk / "data"
        data_dir.mkdir()
        limit = free(disk) - HEADROOM
        process = BrokerProcess(
            data_dir,
            *("--tls-port", "0", "--tls-cert", str(cert), "--tls-key", str(key)),
            *("--disk-free-limit", str(limit)),
        ).start()
        try:
            filler = disk / "filler"
            env = {
                "AMQPS_URL": f"amqps://guest:guest@127.0.0.1:{_amqps_port(process)}/",
                "AMQPS_CA": str(ca_file),
                "DISK_FILLER": str(filler),
                "DISK_FILLER_BYTES": str(FILLER_SIZE),
            }
            yield SimpleNamespace(url=process.url, env=env, filler=filler, process=process)
        finally:
            process.stop()
