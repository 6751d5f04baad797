"""Connection-level behaviour of the sans-IO core: protocol header, connection.start/tune/open,
authentication (PLAIN, AMQPLAIN), tune-ok negotiation, heartbeats and the handshake timeout
(driven by ``FakeClock``), connection.close in both directions, and the internal-error boundary.

Expected answers are RabbitMQ 3.10's: errors before tune-ok completes close the socket without a
``connection.close`` (except a refused login when the client has ``authentication_failure_close``);
from connection.open on, errors are reported with ``connection.close``.
"""

from __future__ import annotations

import pytest
from pamqp import commands, encode
from pamqp.heartbeat import Heartbeat

from amqp_server.core import channel as channel_module
from amqp_server.core.broker import Broker
from tests.frames import PROTOCOL_HEADER, FakeClock, Peer, method, open_peer

HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
CAPABILITIES = {"authentication_failure_close": True, "consumer_cancel_notify": True}


def new_peer() -> tuple[Peer, FakeClock]:
    clock = FakeClock()
    return Peer(Broker(clock=clock)), clock


def start_ok(
    mechanism: str = "PLAIN", response: str = "\0guest\0guest", capabilities: dict | None = None
) -> commands.Connection.StartOk:
    properties = {"capabilities": CAPABILITIES if capabilities is None else capabilities}
    return commands.Connection.StartOk(client_properties=properties, mechanism=mechanism, response=response)


def amqplain(login: str, password: str) -> str:
    """An AMQPLAIN response: a field table without its 4-byte length prefix."""
    return encode.field_table({"LOGIN": login, "PASSWORD": password})[4:].decode("latin-1")


def tune_ok(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 0) -> commands.Connection.TuneOk:
    return commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat)


def after_start_ok(**start_ok_args) -> tuple[Peer, FakeClock]:
    peer, clock = new_peer()
    peer.send(PROTOCOL_HEADER)
    peer.send_method(0, start_ok(**start_ok_args))
    return peer, clock


def after_tune_ok(**tune_ok_args) -> tuple[Peer, FakeClock]:
    peer, clock = after_start_ok()
    peer.send_method(0, tune_ok(**tune_ok_args))
    peer.frames()
    return peer, clock


def run_timers(peer: Peer, clock: FakeClock, until: float) -> list:
    """Call ``handle_timer`` whenever ``next_deadline`` says, up to time ``until``; return what was sent."""
    sent = []
    for _ in range(10_000):
        deadline = peer.connection.next_deadline()
        if peer.connection.should_close or deadline is None or deadline > until:
            break
        clock.now = max(clock.now, deadline)
        peer.connection.handle_timer(clock.now)
        sent += peer.frames()
    else:
        raise AssertionError("next_deadline() does not advance")
    clock.now = until
    return sent


def closes(frames: list) -> list:
    return [f for _, f in frames if isinstance(f, commands.Connection.Close)]


def assert_closed_silently(peer: Peer, clock: FakeClock, sent: list) -> None:
    """The connection is dropped without connection.close (at once, or after a short silent-close delay)."""
    sent = sent + run_timers(peer, clock, clock.now + 5)
    assert peer.connection.should_close
    assert closes(sent) == []


def assert_connection_closed(
    sent: list, reply_code: int, text_prefix: str = "", class_id: int | None = None, method_id: int | None = None
) -> commands.Connection.Close:
    found = closes(sent)
    assert len(found) == 1, sent
    close = found[0]
    assert close.reply_code == reply_code, close.reply_text
    assert close.reply_text.startswith(text_prefix), close.reply_text
    if class_id is not None:
        assert (close.class_id, close.method_id) == (class_id, method_id)
    return close


# ------------------------------------------------------------------ protocol header


@pytest.mark.parametrize(
    "header", [b"AMQP\x00\x00\x09\x00", b"AMQP\x00\x00\x08\x00", b"HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n"]
)
def test_wrong_protocol_header_gets_ours_back_and_close(header):
    peer, _ = new_peer()
    peer.send(header)
    assert peer.connection.data_to_send() == PROTOCOL_HEADER
    assert peer.connection.should_close


def test_protocol_header_split_across_reads():
    peer, _ = new_peer()
    for piece in (b"AM", b"QP\x00", b"\x00\x09", b"\x01"):
        peer.send(piece)
    frames = peer.frames()
    assert [type(f) for _, f in frames] == [commands.Connection.Start]
    assert not peer.connection.should_close


def test_protocol_header_and_start_ok_in_one_read():
    peer, _ = new_peer()
    peer.send(PROTOCOL_HEADER + method(0, start_ok()))
    assert [type(f) for _, f in peer.frames()] == [commands.Connection.Start, commands.Connection.Tune]


# ------------------------------------------------------------------ connection.start


def test_connection_start_advertises_version_capabilities_and_mechanisms():
    peer, _ = new_peer()
    peer.send(PROTOCOL_HEADER)
    [(channel, start)] = peer.frames()
    assert channel == 0
    assert (start.version_major, start.version_minor) == (0, 9)
    capabilities = start.server_properties["capabilities"]
    for name in (
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "authentication_failure_close",
        "per_consumer_qos",
    ):
        assert capabilities[name] is True, name
    assert {"PLAIN", "AMQPLAIN"} <= set(start.mechanisms.split())
    assert "en_US" in start.locales.split()


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize(
    "mechanism,response",
    [("PLAIN", "\0guest\0guest"), ("AMQPLAIN", amqplain("guest", "guest"))],
    ids=["PLAIN", "AMQPLAIN"],
)
def test_valid_login_gets_tune(mechanism, response):
    peer, _ = after_start_ok(mechanism=mechanism, response=response)
    sent = peer.frames()
    assert [type(f) for _, f in sent] == [commands.Connection.Start, commands.Connection.Tune]
    assert not peer.connection.should_close


@pytest.mark.parametrize(
    "mechanism,response",
    [
        ("PLAIN", "\0guest\0wrong"),
        ("PLAIN", "\0nobody\0guest"),
        ("AMQPLAIN", amqplain("guest", "wrong")),
    ],
    ids=["PLAIN-bad-password", "PLAIN-unknown-user", "AMQPLAIN-bad-password"],
)
def test_refused_login_with_authentication_failure_close_gets_403(mechanism, response):
    peer, _ = after_start_ok(mechanism=mechanism, response=response)
    sent = peer.frames()
    assert_connection_closed(
        sent,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism "
        f"{mechanism}. For details see the broker logfile.",
        0,
        0,
    )
    assert not any(isinstance(f, commands.Connection.Tune) for _, f in sent)
    peer.send_method(0, commands.Connection.CloseOk())
    assert peer.connection.should_close


def test_refused_login_without_authentication_failure_close_just_closes():
    peer, clock = after_start_ok(response="\0guest\0wrong", capabilities={})
    assert_closed_silently(peer, clock, peer.frames())


@pytest.mark.parametrize(
    "mechanism,response",
    [("FOO", "\0guest\0guest"), ("PLAIN", "garbage")],
    ids=["unknown-mechanism", "malformed-plain"],
)
def test_unknown_mechanism_or_malformed_response_closes_without_connection_close(mechanism, response):
    peer, clock = after_start_ok(mechanism=mechanism, response=response)
    sent = peer.frames()
    assert not any(isinstance(f, commands.Connection.Tune) for _, f in sent)
    assert_closed_silently(peer, clock, sent)


# ------------------------------------------------------------------ tune / tune-ok


def test_tune_proposes_rabbitmq_defaults():
    peer, _ = after_start_ok()
    tune = peer.frames()[-1][1]
    assert isinstance(tune, commands.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


@pytest.mark.parametrize("frame_max", [4096, 65536, 131072])
def test_tune_ok_with_acceptable_frame_max_leads_to_open(frame_max):
    peer, _ = after_tune_ok(frame_max=frame_max)
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    assert [type(f) for _, f in peer.frames()] == [commands.Connection.OpenOk]
    assert peer.connection.frame_max == frame_max


@pytest.mark.parametrize(
    "tune_args",
    [
        {"frame_max": 4095},  # below the 4096 minimum
        {"frame_max": 131073},  # above what the server proposed
        {"frame_max": 0},  # "no limit" exceeds the server's limit
        {"channel_max": 2048},
        {"channel_max": 0},
    ],
    ids=lambda args: ",".join(f"{k}={v}" for k, v in args.items()),
)
def test_tune_ok_outside_server_limits_is_refused(tune_args):
    peer, clock = after_start_ok()
    peer.frames()
    peer.send_method(0, tune_ok(**tune_args))
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    sent = peer.frames()
    assert not any(isinstance(f, commands.Connection.OpenOk) for _, f in sent)
    assert_closed_silently(peer, clock, sent)


def test_negotiated_frame_max_is_enforced():
    peer = open_peer(frame_max=4096)
    peer.send_method(1, commands.Queue.Declare(queue="q", arguments={"x": "a" * 4950}))
    assert_connection_closed(peer.frames(), 501, "FRAME_ERROR")


def test_channel_number_above_channel_max_is_accepted():
    """RabbitMQ limits how many channels are open, not their numbers."""
    peer = Peer(Broker(clock=FakeClock()))
    peer.send(PROTOCOL_HEADER)
    peer.send_method(0, start_ok())
    peer.send_method(0, tune_ok(channel_max=10))
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    peer.frames()
    peer.send_method(11, commands.Channel.Open())
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(11, commands.Channel.OpenOk)]


def test_opening_more_channels_than_channel_max_is_refused_with_530():
    peer = Peer(Broker(clock=FakeClock()))
    peer.send(PROTOCOL_HEADER)
    peer.send_method(0, start_ok())
    peer.send_method(0, tune_ok(channel_max=2))
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    peer.frames()
    peer.send_method(1, commands.Channel.Open())
    peer.send_method(2, commands.Channel.Open())
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(1, commands.Channel.OpenOk), (2, commands.Channel.OpenOk)]
    peer.send_method(3, commands.Channel.Open())
    assert_connection_closed(
        peer.frames(), 530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    )


# ------------------------------------------------------------------ connection.open


def test_open_default_vhost():
    peer, _ = after_tune_ok()
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(0, commands.Connection.OpenOk)]
    assert not peer.connection.should_close


def test_open_unknown_vhost_gets_530():
    peer, _ = after_tune_ok()
    peer.send_method(0, commands.Connection.Open(virtual_host="nope"))
    assert_connection_closed(peer.frames(), 530, "NOT_ALLOWED - vhost nope not found", 10, 40)
    peer.send_method(0, commands.Connection.CloseOk())
    assert peer.connection.should_close


# ------------------------------------------------------------------ methods out of order


@pytest.mark.parametrize(
    "stage,frame",
    [
        pytest.param("before start-ok", method(0, commands.Connection.Open(virtual_host="/")), id="open-for-start-ok"),
        pytest.param("before start-ok", method(1, commands.Channel.Open()), id="channel-open-for-start-ok"),
        pytest.param("before tune-ok", method(0, commands.Connection.Open(virtual_host="/")), id="open-for-tune-ok"),
        pytest.param("before tune-ok", method(0, start_ok()), id="start-ok-for-tune-ok"),
    ],
)
def test_out_of_order_method_before_tune_ok_closes_without_connection_close(stage, frame):
    if stage == "before start-ok":
        peer, clock = new_peer()
        peer.send(PROTOCOL_HEADER)
    else:
        peer, clock = after_start_ok()
    peer.frames()
    peer.send(frame)
    sent = peer.frames()
    assert not any(isinstance(f, (commands.Connection.Tune, commands.Connection.OpenOk)) for _, f in sent)
    assert_closed_silently(peer, clock, sent)


def test_channel_open_before_connection_open_gets_505():
    peer, _ = after_tune_ok()
    peer.send_method(1, commands.Channel.Open())
    sent = peer.frames()
    assert_connection_closed(sent, 505, "UNEXPECTED_FRAME")
    assert not any(isinstance(f, commands.Channel.OpenOk) for _, f in sent)


@pytest.mark.parametrize(
    "value",
    [
        commands.Connection.Open(virtual_host="/"),
        commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\0guest\0guest"),
        commands.Channel.Open(),
        commands.Queue.Declare(queue="x"),
        commands.Basic.Publish(exchange="", routing_key="q"),  # decoded by the fast path, which used to crash here
    ],
    ids=lambda value: value.name,
)
def test_unexpected_method_on_channel_zero_after_open_gets_504(value):
    peer = open_peer()
    peer.send_method(0, value)
    assert_connection_closed(
        peer.frames(),
        504,
        "CHANNEL_ERROR - unexpected method in connection state running",
        value.index >> 16,
        value.index & 0xFFFF,
    )


def test_connection_method_on_a_channel_gets_503():
    peer = open_peer()
    peer.send_method(1, commands.Connection.Open(virtual_host="/"))
    assert_connection_closed(peer.frames(), 503, "COMMAND_INVALID", 10, 40)


# ------------------------------------------------------------------ frame size before tune-ok


def test_frame_larger_than_4096_before_tune_ok_is_refused_without_buffering():
    peer, clock = new_peer()
    peer.send(PROTOCOL_HEADER)
    peer.frames()
    # only the 7-byte header of a 1 MB frame: refused before any payload arrives
    peer.send(b"\x01\x00\x00\x00\x0f\x42\x40")
    sent = peer.frames()
    assert not any(isinstance(f, commands.Connection.Tune) for _, f in sent)
    assert_closed_silently(peer, clock, sent)


def test_valid_start_ok_larger_than_4096_is_refused():
    peer, clock = new_peer()
    peer.send(PROTOCOL_HEADER)
    peer.frames()
    start_ok_frame = method(0, start_ok(capabilities={**CAPABILITIES, "padding": "x" * 5000}))
    assert len(start_ok_frame) > 4096
    peer.send(start_ok_frame[:1000])
    peer.send(start_ok_frame[1000:])
    sent = peer.frames()
    assert not any(isinstance(f, commands.Connection.Tune) for _, f in sent)
    assert_closed_silently(peer, clock, sent)


# ------------------------------------------------------------------ heartbeats


def open_with_heartbeat(heartbeat: int) -> tuple[Peer, FakeClock]:
    clock = FakeClock()
    peer = Peer(Broker(clock=clock))
    peer.handshake(heartbeat=heartbeat)
    return peer, clock


def heartbeats(frames: list) -> list:
    return [f for ch, f in frames if ch == 0 and isinstance(f, Heartbeat)]


def test_broker_sends_heartbeat_when_quiet():
    peer, clock = open_with_heartbeat(10)
    start = clock.now
    early = peer.connection.next_deadline()
    assert early is not None and start < early <= start + 10
    peer.connection.handle_timer(start + 0.1)
    assert peer.frames() == []
    sent = run_timers(peer, clock, start + 10)
    assert heartbeats(sent)
    assert not peer.connection.should_close


def test_heartbeat_frame_bytes():
    peer, clock = open_with_heartbeat(10)
    clock.now = peer.connection.next_deadline()
    peer.connection.handle_timer(clock.now)
    assert peer.connection.data_to_send() == HEARTBEAT


def test_silent_peer_dropped_after_two_missed_heartbeats_but_not_before():
    peer, clock = open_with_heartbeat(10)
    start = clock.now
    sent = run_timers(peer, clock, start + 19.9)
    assert not peer.connection.should_close
    sent += run_timers(peer, clock, start + 30)
    assert peer.connection.should_close
    assert closes(sent) == []  # missed heartbeats: the socket is just closed


def test_incoming_data_resets_the_heartbeat_timeout():
    peer, clock = open_with_heartbeat(10)
    start = clock.now
    run_timers(peer, clock, start + 15)
    peer.send(HEARTBEAT)
    run_timers(peer, clock, start + 34.9)
    assert not peer.connection.should_close
    run_timers(peer, clock, start + 45)
    assert peer.connection.should_close


def test_no_heartbeats_when_negotiated_zero():
    peer, clock = open_with_heartbeat(0)
    sent = run_timers(peer, clock, clock.now + 3600)
    assert sent == []
    assert not peer.connection.should_close


# ------------------------------------------------------------------ handshake timeout


@pytest.mark.parametrize("progress", ["nothing sent", "header sent", "start-ok sent", "tune-ok sent"])
def test_handshake_timeout_closes_idle_connection(progress):
    peer, clock = new_peer()
    start = clock.now
    if progress != "nothing sent":
        peer.send(PROTOCOL_HEADER)
    if progress in ("start-ok sent", "tune-ok sent"):
        peer.send_method(0, start_ok())
    if progress == "tune-ok sent":
        peer.send_method(0, tune_ok())
    peer.frames()
    run_timers(peer, clock, start + 9.9)
    assert not peer.connection.should_close
    sent = run_timers(peer, clock, start + 10)
    assert peer.connection.should_close
    assert not any(isinstance(f, commands.Connection.OpenOk) for _, f in sent)


def test_open_connection_does_not_time_out():
    peer, clock = open_with_heartbeat(0)
    run_timers(peer, clock, clock.now + 3600)
    assert not peer.connection.should_close


# ------------------------------------------------------------------ connection.update-secret


def update_secret(new_secret: str = "guest") -> commands.Connection.UpdateSecret:
    return commands.Connection.UpdateSecret(new_secret=new_secret, reason="rotation")


@pytest.mark.parametrize("new_secret", ["guest", "not-the-password", ""], ids=["right", "wrong", "empty"])
def test_update_secret_gets_update_secret_ok_and_the_connection_lives_on(new_secret):
    """RabbitMQ 3.10 with its internal users checks no secret (probed: right, wrong and empty all get -ok).

    Its internal backend cannot expire, so update-secret has nothing to refresh; amqplib's suite sends one.
    """
    peer = open_peer()
    peer.send_method(0, update_secret(new_secret))
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(0, commands.Connection.UpdateSecretOk)]
    peer.open_channel(2)
    peer.send_method(0, update_secret(new_secret))  # and again, as a client refreshing a token does
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(0, commands.Connection.UpdateSecretOk)]
    assert not peer.connection.should_close


def test_update_secret_during_tuning_drops_the_socket_without_a_frame():
    """Before tune-ok RabbitMQ (probed) answers nothing and closes the socket, as for any unexpected method."""
    peer, clock = after_start_ok()
    peer.frames()
    peer.send_method(0, update_secret())
    assert_closed_silently(peer, clock, peer.frames())


def test_update_secret_before_connection_open_gets_504():
    """After tune-ok but before connection.open, RabbitMQ (probed) closes with 504, naming state `opening`."""
    peer, _ = after_tune_ok()
    peer.send_method(0, update_secret())
    close = assert_connection_closed(peer.frames(), 504, class_id=10, method_id=70)
    assert close.reply_text == "CHANNEL_ERROR - unexpected method in connection state opening"


def test_update_secret_on_an_open_channel_gets_503():
    peer = open_peer()
    peer.send_method(1, update_secret())
    close = assert_connection_closed(peer.frames(), 503, class_id=10, method_id=70)
    assert close.reply_text == "COMMAND_INVALID - unimplemented method"


def test_update_secret_on_a_channel_not_open_gets_504():
    peer = open_peer()
    peer.send_method(3, update_secret())
    close = assert_connection_closed(peer.frames(), 504, class_id=10, method_id=70)
    assert close.reply_text == "CHANNEL_ERROR - expected 'channel.open'"


# ------------------------------------------------------------------ connection.close


def test_client_close_gets_close_ok_and_the_client_closes_the_socket():
    """As RabbitMQ: after close-ok the broker leaves the socket to the client (30 s at most)."""
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    peer.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    assert [(ch, type(f)) for ch, f in peer.frames()] == [(0, commands.Connection.CloseOk)]
    assert not peer.connection.should_close
    peer.send_method(1, commands.Queue.Declare(queue="ignored"))
    assert peer.frames() == []
    peer.connection.handle_timer(clock.advance(30))
    assert peer.connection.should_close


def test_after_broker_close_other_frames_are_ignored_until_close_ok():
    broker = Broker(clock=FakeClock())
    peer = open_peer(broker)
    peer.send_method(1, commands.Channel.Open())  # second channel.open: connection error
    assert_connection_closed(peer.frames(), 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    peer.send_method(1, commands.Queue.Declare(queue="after-close"))
    peer.send_method(2, commands.Channel.Open())
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    assert peer.frames() == []
    assert not peer.connection.should_close
    peer.send_method(0, commands.Connection.CloseOk())
    assert peer.connection.should_close
    assert "after-close" not in broker.vhosts["/"].queues


# ------------------------------------------------------------------ internal errors


def test_internal_error_closes_only_that_connection_with_541(monkeypatch):
    def broken(channel, value):
        raise RuntimeError("boom")

    broker = Broker(clock=FakeClock())
    first, second = open_peer(broker), open_peer(broker)
    monkeypatch.setitem(channel_module._HANDLERS, commands.Basic.Recover.index, broken)
    first.send_method(1, commands.Basic.Recover(requeue=True))
    assert_connection_closed(first.frames(), 541, "INTERNAL_ERROR")
    second.send_method(1, commands.Queue.Declare(queue="still-works"))
    [(channel, declare_ok)] = second.frames()
    assert channel == 1 and isinstance(declare_ok, commands.Queue.DeclareOk)
    assert not second.connection.should_close
