"""The admin command line (``amqp-server users|vhosts|permissions|definitions …``), run as a process against
real broker processes (and in-process for listings and refusals, which need no broker).

Changes to users, vhosts and permissions reach a running broker through its
management API (tested in ``test_cli_management``).  Definitions export/import work
on a stopped broker's data dir and say so clearly when a broker holds it.  Invalid configuration exits
with 2 and one line, without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amqp_server.ops.cli import main as cli_main

from .broker_process import BrokerProcess
from .pika_helpers import connect

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "amqp_server", *args]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO)


def ok(*args: str, data_dir: Path) -> str:
    result = cli(*args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the tests that change it while it runs (each uses its own user and vhost names)."""
    process = BrokerProcess(tmp_path_factory.mktemp("running-data")).start()
    try:
        yield process
    finally:
        process.stop()


# ------------------------------------------------------------------ while the broker runs


def test_definitions_export_is_refused_while_the_broker_runs(running: BrokerProcess, tmp_path: Path) -> None:
    result = cli("definitions", "export", str(tmp_path / "out.json"), data_dir=running.data_dir)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "amqp-server: cannot export definitions while a broker is running: data dir "
        f"{running.data_dir} is already in use"
    )
    assert result.stderr.rstrip().endswith("Stop the broker first.")
    assert not (tmp_path / "out.json").exists()


def test_definitions_import_is_refused_while_the_broker_runs(running: BrokerProcess, tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"vhosts": [{"name": "never"}]}))
    result = cli("definitions", "import", str(path), data_dir=running.data_dir)
    assert result.returncode == 1
    assert "cannot import definitions while a broker is running" in result.stderr
    assert "--load-definitions" in result.stderr
    assert "never" not in ok("vhosts", "list", data_dir=running.data_dir)


# ------------------------------------------------------------------ definitions round trip


def test_definitions_round_trip_through_export_and_import(tmp_path: Path) -> None:
    source, target, path = tmp_path / "source", tmp_path / "target", tmp_path / "definitions.json"
    ok("users", "add", "erin", "erin-pw", data_dir=source)
    ok("vhosts", "add", "shop", data_dir=source)
    ok("permissions", "set", "erin", "/", "^erin-.*", ".*", ".*", data_dir=source)
    broker = BrokerProcess(source).start()
    try:
        channel = connect(broker).channel()
        channel.exchange_declare("orders", "topic", durable=True)
        channel.queue_declare("orders.eu", durable=True, arguments={"x-max-length": 100})
        channel.queue_bind("orders.eu", "orders", "eu.#")
        channel.connection.close()
    finally:
        broker.stop()
    ok("definitions", "export", str(path), data_dir=source)
    exported = json.loads(path.read_text())
    assert {
        "name": "orders.eu",
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "type": "classic",
        "arguments": {"x-max-length": 100},
    } in exported["queues"]
    assert "imported" in ok("definitions", "import", str(path), data_dir=target)
    broker = BrokerProcess(target).start()
    try:
        connection = connect(broker, "erin", "erin-pw")
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("orders", "eu.fr", b"bonjour")
        assert channel.basic_get("orders.eu", auto_ack=True)[2] == b"bonjour"
        connection.close()
    finally:
        broker.stop()
    assert "shop" in ok("vhosts", "list", data_dir=target).split()


def test_export_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin(capsys, "users", "add", "frank", "pw", data_dir=tmp_path)
    code, out, _ = admin(capsys, "definitions", "export", "-", data_dir=tmp_path)
    assert code == 0 and {user["name"] for user in json.loads(out)["users"]} == {"guest", "frank"}


# ------------------------------------------------------------------ listing and errors (in-process: faster)


def admin(capsys: pytest.CaptureFixture[str], *args: str, data_dir: Path) -> tuple[int, str, str]:
    code = cli_main([*args, "--data-dir", str(data_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin(capsys, "users", "add", "gina", "pw", "--tags", "administrator,monitoring", data_dir=tmp_path)
    admin(capsys, "vhosts", "add", "v1", data_dir=tmp_path)
    admin(capsys, "permissions", "set", "gina", "v1", "^g-", "", ".*", data_dir=tmp_path)
    assert admin(capsys, "users", "list", data_dir=tmp_path) == (
        0,
        "guest\t[administrator]\ngina\t[administrator, monitoring]\n",
        "",
    )
    assert admin(capsys, "vhosts", "list", data_dir=tmp_path) == (0, "/\nv1\n", "")
    assert admin(capsys, "permissions", "list", data_dir=tmp_path) == (
        0,
        "guest\t/\t.*\t.*\t.*\ngina\tv1\t^g-\t\t.*\n",
        "",
    )
    assert admin(capsys, "permissions", "clear", "gina", "v1", data_dir=tmp_path)[0] == 0
    assert admin(capsys, "permissions", "list", data_dir=tmp_path)[1] == "guest\t/\t.*\t.*\t.*\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (("users", "add", "guest", "x"), "amqp-server: user 'guest' already exists\n"),
        (("users", "delete", "nobody"), "amqp-server: no user 'nobody'\n"),
        (("vhosts", "add", "/"), "amqp-server: vhost '/' already exists\n"),
        (("vhosts", "delete", "nope"), "amqp-server: no vhost 'nope'\n"),
        (
            ("vhosts", "delete", "/"),
            "amqp-server: vhost '/' cannot be deleted: it always exists (remove its permissions instead)\n",
        ),
        (("permissions", "set", "guest", "nope", ".*", ".*", ".*"), "amqp-server: no vhost 'nope'\n"),
        (("permissions", "set", "nobody", "/", ".*", ".*", ".*"), "amqp-server: no user 'nobody'\n"),
        (
            ("permissions", "set", "guest", "/", "(", ".*", ".*"),
            "amqp-server: permissions set: invalid regular expression '(': missing ), unterminated subpattern at "
            "position 0\n",
        ),
        (("permissions", "clear", "guest", "nope"), "amqp-server: user 'guest' has no permissions in vhost 'nope'\n"),
    ],
)
def test_refused_changes_exit_1_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert admin(capsys, *args, data_dir=tmp_path) == (1, "", message)


def test_refused_change_leaves_the_file_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin(capsys, "users", "add", "ivan", "pw", data_dir=tmp_path)
    before = (tmp_path / "access.json").read_bytes()
    assert admin(capsys, "users", "add", "ivan", "other", data_dir=tmp_path)[0] == 1
    assert (tmp_path / "access.json").read_bytes() == before


def test_invalid_flag_exits_2_without_traceback(tmp_path: Path) -> None:
    result = cli("--port", "70000", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "amqp-server: invalid configuration: --port must be between 0 and 65535, got 70000\n"


def test_invalid_config_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "amqp-server.toml"
    path.write_text('port = 5672\nlog_format = "yaml"\n')
    result = cli("--config", str(path), data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"amqp-server: invalid configuration: log_format: must be one of text, json, got 'yaml' (from {path})\n"
    )


def test_certificate_that_does_not_load_exits_2(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("not PEM\n")
    result = cli(
        "--port",
        "0",
        "--tls-port",
        "0",
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
        data_dir=tmp_path / "data",
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "amqp-server: invalid configuration: tls_cert: cannot load the certificate and key: "
    )
    assert "Traceback" not in result.stderr


def test_config_file_users_can_log_in(tmp_path: Path) -> None:
    path = tmp_path / "amqp-server.toml"
    path.write_text(
        '[[users]]\nname = "hana"\npassword = "hana-pw"\n\n[[vhosts]]\nname = "apps"\n\n'
        '[[permissions]]\nuser = "hana"\nvhost = "apps"\nconfigure = ".*"\nwrite = ".*"\nread = ".*"\n'
    )
    broker = BrokerProcess(tmp_path / "data", "--config", str(path)).start()
    try:
        connection = connect(broker, "hana", "hana-pw", "apps")
        connection.channel().queue_declare("hana-q")
        connection.close()
    finally:
        broker.stop()
