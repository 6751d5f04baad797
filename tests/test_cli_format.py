"""The CLI's output of API listings (``ops.table_format``), its one-line errors (``ops.http_client``) and how it
learns that a broker runs on a data dir (``ops.running``): no broker, no sockets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from amqp_server.ops import running
from amqp_server.ops.api_commands import CommandFailed, api_parser, api_url
from amqp_server.ops.http_client import ApiRequestError, ManagementClient, error_message
from amqp_server.ops.table_format import cell, pick, render, select, split_columns

QUEUES = [
    {
        "name": "orders",
        "vhost": "/",
        "messages": 3,
        "durable": True,
        "arguments": {"x-queue-type": "classic", "x-max-length": 10},
        "message_stats": {"publish": 4, "publish_details": {"rate": 0.5}},
    },
    {"name": "idle", "vhost": "shop", "messages": 0, "durable": False, "arguments": {}},
]


def test_columns_are_split_on_commas() -> None:
    assert split_columns("name, messages,,message_stats.publish ") == ["name", "messages", "message_stats.publish"]


def test_dotted_columns_reach_into_nested_objects() -> None:
    assert pick(QUEUES[0], "message_stats.publish_details.rate") == 0.5
    assert pick(QUEUES[0], "arguments.x-queue-type") == "classic"
    assert cell(pick(QUEUES[1], "message_stats.publish")) == ""  # absent: an empty cell


def test_a_key_with_dots_wins_over_descending() -> None:
    item = {"a.b": 1, "a": {"b": 2}, "c": {"d.e": {"f": 3}}}
    assert pick(item, "a.b") == 1
    assert pick(item, "c.d.e.f") == 3


def test_json_selection_keeps_the_nesting_as_the_api_columns_do() -> None:
    assert select(QUEUES, ["name", "message_stats.publish", "arguments.x-max-length"]) == [
        {"name": "orders", "message_stats": {"publish": 4}, "arguments": {"x-max-length": 10}},
        {"name": "idle"},
    ]


def test_table_is_rabbitmqadmins() -> None:
    assert render(QUEUES, ["vhost", "name", "messages"], "table") == "\n".join(
        [
            "+-------+--------+----------+",
            "| vhost |  name  | messages |",
            "+-------+--------+----------+",
            "| /     | orders | 3        |",
            "| shop  | idle   | 0        |",
            "+-------+--------+----------+",
        ]
    )


def test_an_empty_table_says_so_and_an_empty_tsv_keeps_its_header() -> None:
    assert render([], ["name", "messages"], "table") == "No items"
    assert render([], ["name", "messages"], "tsv") == "name\tmessages"


def test_tsv_has_a_header_and_one_line_per_item() -> None:
    assert render(QUEUES, ["name", "durable", "arguments.x-queue-type"], "tsv") == (
        "name\tdurable\targuments.x-queue-type\norders\ttrue\tclassic\nidle\tfalse\t"
    )


def test_cells_spell_values_as_json_and_stay_on_one_line() -> None:
    assert cell(["administrator", "management"]) == "administrator management"  # tags, as rabbitmqadmin
    assert cell({"x-max-length": 10}) == '{"x-max-length":10}'
    assert cell(None) == ""
    assert cell(1.5) == "1.5"
    assert cell("two\nlines\tand a tab") == "two\\nlines\\tand a tab"


def test_json_without_columns_is_every_field() -> None:
    assert json.loads(render(QUEUES, None, "json")) == QUEUES
    assert json.loads(render(QUEUES, ["name"], "json")) == [{"name": "orders"}, {"name": "idle"}]


def test_table_without_columns_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        render(QUEUES, None, "table")


@pytest.mark.parametrize(
    "status, body, line",
    [
        (404, b'{"error":"Object Not Found","reason":"Not Found"}', "not found: DELETE /api/queues/%2F/q"),
        (
            400,
            b'{"error":"bad_request","reason":"inequivalent arg \'durable\' for queue \'q\' in vhost \'/\': '
            b"received 'false' but current is 'true'\"}",
            "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'",
        ),
        (400, b'{"error":"bad_request","reason":["not_boolean","yes"]}', '["not_boolean","yes"]'),
        (
            400,
            b'{"error":"bad_request","reason":"Validation failed\\n\\n'
            b'&lt;&lt;\\"x\\"&gt;&gt; is not a valid message TTL\\n"}',
            'Validation failed <<"x">> is not a valid message TTL',
        ),
        (
            401,
            b'{"error":"not_authorized","reason":"Login failed"}',
            "access refused (Login failed): DELETE /api/queues/%2F/q",
        ),
        (401, b"", "access refused (no credentials): DELETE /api/queues/%2F/q"),
        (405, b"", "HTTP 405 on DELETE /api/queues/%2F/q"),
        (500, b"<html>oops</html>", "HTTP 500 on DELETE /api/queues/%2F/q"),
        (
            503,
            b'{"error":"service_unavailable","reason":"starting"}',
            "HTTP 503 on DELETE /api/queues/%2F/q: service_unavailable: starting",
        ),
    ],
)
def test_error_bodies_become_one_line(status: int, body: bytes, line: str) -> None:
    assert error_message("DELETE", "/api/queues/%2F/q?if-empty=true", status, body) == line


# ------------------------------------------------------------------ is a broker running here?


def test_no_running_file_means_no_broker(tmp_path: Path) -> None:
    assert running.probe(tmp_path) is None


def test_a_claim_is_seen_until_it_is_released(tmp_path: Path) -> None:
    claim = running.RunningClaim(tmp_path)
    try:
        assert running.probe(tmp_path) == running.Running(None, None, published=False)  # still starting
        claim.publish("http://127.0.0.1:15999")
        found = running.probe(tmp_path)
        assert found is not None and found.published and found.management_url == "http://127.0.0.1:15999"
        claim.publish(None)  # the API turned off
        assert running.probe(tmp_path) == running.Running(found.pid, None, published=True)
    finally:
        claim.release()
    assert running.probe(tmp_path) is None  # the file stays, its lock is gone
    assert (tmp_path / running.RUNNING_FILE).read_text() == ""


def test_stale_contents_without_the_lock_are_not_a_broker(tmp_path: Path) -> None:
    """What a broker killed with SIGKILL leaves behind: its address, but no lock."""
    (tmp_path / running.RUNNING_FILE).write_text('{"pid": 1, "management_url": "http://127.0.0.1:15672"}')
    assert running.probe(tmp_path) is None


def test_a_second_claim_on_the_same_data_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(running, "CLAIM_TIMEOUT", 0.0)
    claim = running.RunningClaim(tmp_path)
    try:
        with pytest.raises(running.AlreadyRunning):
            running.RunningClaim(tmp_path)
    finally:
        claim.release()


def test_waiting_for_a_starting_broker_ends_when_it_publishes_or_stops(tmp_path: Path) -> None:
    claim = running.RunningClaim(tmp_path)
    try:
        assert running.wait_published(tmp_path, timeout=0.0) == running.Running(None, None, published=False)
        claim.publish("http://127.0.0.1:1")
        found = running.wait_published(tmp_path, timeout=0.0)
        assert found is not None and found.management_url == "http://127.0.0.1:1"
    finally:
        claim.release()
    assert running.wait_published(tmp_path, timeout=0.0) is None


# ------------------------------------------------------------------ where the API is, and as whom


def url_for(argv: list[str], environ: dict[str, str]) -> str:
    return api_url(api_parser().parse_args(["list", "queues", *argv]), environ)


def test_the_url_comes_from_the_flag_then_rabbitmqadmins_variable(tmp_path: Path) -> None:
    environ = {"AMQP_SERVER_DATA_DIR": str(tmp_path), "RABBITMQADMIN_BASE_URI": "http://env:1"}
    assert url_for(["--url", "http://flag:2"], environ) == "http://flag:2"
    assert url_for([], environ) == "http://env:1"


def test_host_and_port_fill_in_from_the_broker_configuration(tmp_path: Path) -> None:
    environ = {"AMQP_SERVER_DATA_DIR": str(tmp_path), "AMQP_SERVER_HOST": "0.0.0.0"}
    assert url_for(["--management-port", "15999"], environ) == "http://127.0.0.1:15999"
    assert url_for(["--host", "10.1.2.3"], environ) == "http://10.1.2.3:15672"
    assert url_for([], {**environ, "AMQP_SERVER_MANAGEMENT_PORT": "15888"}) == "http://127.0.0.1:15888"
    assert url_for([], {**environ, "RABBITMQADMIN_TARGET_PORT": "15777"}) == "http://127.0.0.1:15777"


def test_the_broker_running_on_the_data_dir_says_where_its_api_is(tmp_path: Path) -> None:
    claim = running.RunningClaim(tmp_path)
    try:
        claim.publish("http://127.0.0.1:41234")
        assert url_for(["--data-dir", str(tmp_path)], {}) == "http://127.0.0.1:41234"
        claim.publish(None)
        with pytest.raises(CommandFailed, match="management API turned off"):
            url_for(["--data-dir", str(tmp_path)], {})
    finally:
        claim.release()
    with pytest.raises(CommandFailed, match="no broker is running on data dir"):
        url_for(["--data-dir", str(tmp_path)], {})


def test_credentials_come_from_the_flags_else_the_url_else_guest() -> None:
    assert ManagementClient("http://127.0.0.1:1").username == "guest"
    from_url = ManagementClient("http://ann:s%40cret@127.0.0.1:1/api/")
    assert (from_url.username, from_url.base_url) == ("ann", "http://127.0.0.1:1")
    assert base64.b64decode(from_url._authorization.split()[1]) == b"ann:s@cret"
    assert ManagementClient("http://ann:x@127.0.0.1:1", "bob", "pw").username == "bob"
    with pytest.raises(ApiRequestError, match="not an http"):
        ManagementClient("amqp://127.0.0.1:5672")
