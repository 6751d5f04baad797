"""One AMQP connection as a sans-IO state machine: bytes in, bytes out, time injected.

How it works: ``receive_data`` takes whatever the socket read.  The first 8 bytes
must be the protocol header; after it, a ``FrameReader`` yields frames, which go
to the handshake (channel 0) or to a ``Channel``; a Basic.Publish whose content
header and single body frame came in the same read goes to its channel in one
call (``Channel.publish_whole``), the hot path of a publishing connection.
Replies and deliveries go to the connection's ``Writer``, whose outbox the I/O layer drains with
``data_to_send`` (once per loop tick: ``on_output`` tells it the first time
something is queued).  Time never comes from a clock read here:
``handle_timer(now)`` sends heartbeats and drops silent peers, and
``next_deadline()`` says when to call it next.

This is also the one boundary where errors become frames: a ``ChannelError``
closes its channel, an ``AMQPConnectionError`` closes the connection, and any
other exception becomes 541 INTERNAL_ERROR on this connection only.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Callable
from typing import Any

from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from ..errors import (
    ACCESS_REFUSED,
    AMQPConnectionError,
    AMQPError,
    ChannelError,
    channel_max_reached,
    connection_forced,
    expected_channel_open,
    expected_method_frame,
    frame_before_open,
    heartbeat_on_channel,
    internal_error,
    login_refused,
    unexpected_connection_method,
    unknown_method_frame,
    vhost_access_refused,
    vhost_not_found,
)
from ..wire.framing import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    Frame,
    FrameReader,
)
from ..wire.methods import BASIC_PUBLISH, channel_open_ok_frame, decode_method
from . import handshake
from .broker import Broker
from .channel import Channel, ChannelState
from .interfaces import ConfirmFlusher, Session
from .writer import Writer

_METHOD_IDS = struct.Struct(">HH")  # class id, method id: the first four bytes of a method payload

log = logging.getLogger("amqp_server.connection")

_PUBLISH_PREFIX = BASIC_PUBLISH.to_bytes(4, "big")  # class 60, method 40: a Basic.Publish payload starts so

CLOSE_OK_TIMEOUT = 3.0  # how long we wait for connection.close-ok before dropping the socket
# After our close-ok, the client closes the socket; closing it ourselves first races clients that
# read close-ok and EOF together (amqp091-go reports a 501 "EOF" then). RabbitMQ waits 30 s too.
LINGER_TIMEOUT = 30.0


class State(enum.Enum):
    AWAITING_HEADER = "awaiting protocol header"
    AWAITING_START_OK = "awaiting connection.start-ok"
    AWAITING_TUNE_OK = "awaiting connection.tune-ok"
    AWAITING_OPEN = "awaiting connection.open"
    OPEN = "open"
    CLOSING = "closing"  # we sent connection.close and wait for close-ok
    CLOSE_OK_SENT = "close-ok sent"  # the client closed: we answered and wait for it to drop the socket
    CLOSED = "closed"


class Connection:
    """The broker's side of one client connection."""

    def __init__(self, broker: Broker, peer: str = "127.0.0.1", on_output: Callable[[], None] | None = None) -> None:
        self.broker = broker
        self.peer = peer
        self.writer = Writer(on_output, broker.limits.frame_max)
        self.state = State.AWAITING_HEADER
        self.channels: dict[int, Channel] = {}
        self.client_properties: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.username = ""
        self.vhost = broker.vhosts["/"]
        self.channel_max = broker.limits.channel_max
        self.heartbeat = 0
        self.is_publisher = False  # has published: subject to the resource alarms
        self.blocked = False  # resource alarm: we stopped reading from this connection
        self._header = b""
        self._confirming: set[ConfirmFlusher] = set()
        self._reader = FrameReader(FRAME_MIN_SIZE)
        now = broker.clock()
        self._last_received = now
        self._last_sent = now
        self._handshake_deadline = now + broker.limits.handshake_timeout
        self._close_deadline = 0.0
        # what the management API shows: set by the I/O layer (local_address, tls) or counted here
        self.local_address = ""  # "HOST:PORT" of our end of the socket
        self.tls = False
        self.auth_mechanism = ""
        self.connected_at = broker.wall_clock()
        self.recv_oct = self.recv_cnt = 0  # bytes and reads from the peer
        self.send_oct = self.send_cnt = 0  # bytes and writes to it
        self._counted_open = False  # counted in broker.counters.connections_opened (closed is counted once)
        broker.connections.add(self)

    # ----------------------------------------------------------------- I/O side

    @property
    def should_close(self) -> bool:
        """True once the transport should be closed (after sending what ``data_to_send`` returns)."""
        return self.state is State.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Process bytes read from the peer."""
        if self.state in _STOPPED:
            return
        self._last_received = self.broker.clock()
        self.recv_oct += len(data)
        self.recv_cnt += 1
        try:
            if self.state is State.AWAITING_HEADER:
                data = self._receive_protocol_header(data)
                if not data:
                    return
            frames = self._reader.feed(data)
            count = len(frames)
            index = 0
            while index < count:
                frame_type, channel_id, payload = frames[index]
                if (
                    frame_type == FRAME_METHOD
                    and index + 2 < count
                    and payload[:4] == _PUBLISH_PREFIX
                    and self._publish_whole(channel_id, payload, frames[index + 1], frames[index + 2])
                ):
                    if self.state is State.CLOSED:
                        return
                    index += 3
                    continue
                self._handle_frame(frame_type, channel_id, payload)
                if self.state is State.CLOSED:
                    return
                index += 1
            if self._reader.error is not None:
                raise self._reader.error
            self._flush_confirms()
        except AMQPConnectionError as error:
            self.close_with_error(error)
        except Exception:
            log.exception("internal error on connection from %s", self.peer, extra=self._log_fields())
            self.close_with_error(internal_error())

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        data = self.writer.take()
        if data:
            self._last_sent = self.broker.clock()
            self.send_oct += len(data)
            self.send_cnt += 1
        return data

    def send(self, data: bytes) -> None:
        self.writer.send(data)

    @property
    def on_output(self) -> Callable[[], None] | None:
        """Called when the first frame of a batch is queued (the I/O layer sets it, and clears it on close)."""
        return self.writer.on_output

    @on_output.setter
    def on_output(self, on_output: Callable[[], None] | None) -> None:
        self.writer.on_output = on_output

    @property
    def frame_max(self) -> int:
        """The negotiated frame_max (the broker's own until tune-ok)."""
        return self.writer.frame_max

    def confirm_pending(self, channel: ConfirmFlusher) -> None:
        """``channel`` has publishes to confirm; they are acked together when this read is done."""
        self._confirming.add(channel)

    def _flush_confirms(self) -> None:
        # One Basic.Ack(multiple) per channel per read instead of one per message.
        if self.state is not State.OPEN:
            self._confirming.clear()  # nothing may follow our connection.close
        while self._confirming:
            self._confirming.pop().flush_confirms()

    def check_access(self, action: str, kind: str, name: str, method: tuple[int, int] = (0, 0)) -> None:
        """403 unless this connection's user may configure/write/read the named resource here.

        ``method``: the (class, method) the refusal names where no dispatcher adds it (basic.publish's
        content arrives after its method: RabbitMQ's channel.close still names 60, 40)."""
        try:  # costs nothing until it raises (3.11's zero-cost try)
            self.broker.access.check(self.username, self.vhost.name, action, kind, name)
        except AMQPError as error:
            raise error.for_method(*method) from None

    def check_topic_access(self, action: str, exchange: str, routing_key: str) -> None:
        """403 unless this user's topic permission on the (topic) ``exchange`` allows ``routing_key``."""
        access = self.broker.access
        if access.topic_permissions:  # none granted (the usual case): a topic publish pays one call, not two
            access.check_topic(self.username, self.vhost.name, action, exchange, routing_key)

    def send_method(self, channel_id: int, method: PamqpMethod) -> None:
        self.writer.send_method(channel_id, method)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must run next (None: no timer needed)."""
        if self.state is State.CLOSED:
            return None
        if self.state in (State.CLOSING, State.CLOSE_OK_SENT):
            return self._close_deadline
        if self.state is not State.OPEN:
            return self._handshake_deadline
        if not self.heartbeat:
            return None
        if self.blocked:  # we are not reading: the peer's heartbeats cannot arrive
            return self._last_sent + self.heartbeat / 2
        return min(self._last_sent + self.heartbeat / 2, self._last_received + 2 * self.heartbeat)

    def handle_timer(self, now: float) -> None:
        """Send a heartbeat when we were quiet; drop a peer silent for two heartbeat intervals."""
        if self.state is State.CLOSED:
            return
        if self.state in (State.CLOSING, State.CLOSE_OK_SENT):
            if now >= self._close_deadline:
                self._finish()
        elif self.state is not State.OPEN:
            if now >= self._handshake_deadline:
                log.warning("closing connection from %s: handshake timeout", self.peer, extra=self._log_fields())
                self._finish()
        elif self.heartbeat:
            if now >= self._last_received + 2 * self.heartbeat and not self.blocked:
                log.warning(
                    "closing connection from %s: missed heartbeats, timeout %ss",
                    self.peer,
                    self.heartbeat,
                    extra=self._log_fields(),
                )
                self._finish()
            elif now >= self._last_sent + self.heartbeat / 2 and not self.writer.outbox:
                self.send(HEARTBEAT_FRAME)

    def connection_lost(self) -> None:
        """The transport is gone: release everything this connection held."""
        if self.state is not State.CLOSED:
            self._finish()

    def set_writable(self, writable: bool) -> None:
        """Transport flow control: while not writable, consumers on this connection get nothing."""
        self.writer.writable = writable
        if writable:
            for channel in list(self.channels.values()):
                channel.resume_deliveries()

    def apply_flow(self, reason: str | None) -> None:
        """Resource alarms changed: block this connection if it publishes, or unblock it when none remains.

        ``reason`` is ``Alarms.reason`` ("low on memory", "low on disk & memory"),
        None when no alarm is in effect.  The I/O layer stops reading while
        ``self.blocked``; clients that advertised the capability are told with one
        connection.blocked (a second alarm sends nothing more, as RabbitMQ) and one
        connection.unblocked when the last alarm clears.
        """
        blocked = reason is not None
        if blocked == self.blocked or (blocked and not self.is_publisher) or self.state is not State.OPEN:
            return
        self.blocked = blocked
        if not blocked:  # as RabbitMQ's heartbeat monitor, paused while we did not read: count from now
            self._last_received = self.broker.clock()
        if self.client_capabilities.get("connection.blocked"):
            self.send_method(
                0,
                commands.Connection.Blocked(reason=reason) if reason is not None else commands.Connection.Unblocked(),
            )

    def close_with_error(self, error: AMQPError) -> None:
        """Send ``connection.close`` with the error and wait (briefly) for close-ok."""
        if self.state in (State.CLOSING, State.CLOSE_OK_SENT, State.CLOSED):
            return
        if self.state in (State.AWAITING_START_OK, State.AWAITING_TUNE_OK) and error.reply_code != ACCESS_REFUSED:
            # RabbitMQ sends no frame for errors before tuning is done: it just drops the socket.
            log.warning(
                "closing connection from %s during the handshake: %s",
                self.peer,
                error.reply_text,
                extra=self._log_fields(reply_code=error.reply_code),
            )
            self._finish()
            return
        log.info(
            "closing connection from %s: %s",
            self.peer,
            error.reply_text,
            extra=self._log_fields(reply_code=error.reply_code),
        )
        self.send_method(
            0, commands.Connection.Close(error.reply_code, error.reply_text[:255], error.class_id, error.method_id)
        )
        self._release_channels()
        self.state = State.CLOSING
        self._close_deadline = self.broker.clock() + CLOSE_OK_TIMEOUT

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        """``extra=`` for log records about this connection: peer, and user/vhost once known."""
        known = {
            "peer": self.peer,
            "user": self.username or None,
            "vhost": self.vhost.name if self.state in (State.OPEN, State.CLOSING) else None,
        }
        return {key: value for key, value in {**known, **fields}.items() if value is not None}

    def force_close(self, reply_text: str) -> None:
        """Close from the broker's side (shutdown): 320 CONNECTION_FORCED."""
        if self.state is State.OPEN:
            self.close_with_error(connection_forced(reply_text))
        else:
            self._finish()

    # --------------------------------------------------------------- framing

    def _receive_protocol_header(self, data: bytes) -> bytes:
        needed = 8 - len(self._header)
        self._header += data[:needed]
        if len(self._header) < 8:
            if PROTOCOL_HEADER.startswith(self._header):
                return b""
        elif self._header == PROTOCOL_HEADER:
            self._start()
            return data[needed:]
        # Not AMQP 0-9-1: tell the peer which protocol we speak, then hang up (spec 4.2.2).
        self.send(PROTOCOL_HEADER)
        self._finish()
        return b""

    def _handle_frame(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        if frame_type == FRAME_HEARTBEAT:
            if payload:
                raise unknown_method_frame(8, payload)
            if channel_id:
                raise heartbeat_on_channel()
        elif self.state is State.CLOSING:
            self._handle_while_closing(frame_type, channel_id, payload)
        elif channel_id == 0:
            if frame_type != FRAME_METHOD:
                raise expected_method_frame()
            self._handle_method0(payload)
        elif self.state is not State.OPEN:
            raise frame_before_open(frame_type, payload)
        else:
            channel = self.channels.get(channel_id)
            if channel is None:
                self._open_channel(channel_id, frame_type, payload)
                return
            try:
                channel.handle_frame(frame_type, payload)
            except ChannelError as error:
                channel.close_with_error(error)

    def _publish_whole(self, channel_id: int, payload: bytes, header: Frame, body: Frame) -> bool:
        """Basic.Publish + content header + one body frame on one channel: one call instead of three dispatches.

        False (nothing done) unless it is that simple case on an open channel; the frames
        then take the general path one by one.
        """
        if (
            header[0] != FRAME_HEADER
            or body[0] != FRAME_BODY
            or header[1] != channel_id
            or body[1] != channel_id
            or self.state is not State.OPEN
        ):
            return False
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        try:
            return channel.publish_whole(payload, header[2], body[2])
        except ChannelError as error:
            channel.close_with_error(error)
            return True

    def _handle_while_closing(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        """After we sent connection.close, only close-ok (or a crossing close) matters."""
        if channel_id != 0 or frame_type != FRAME_METHOD:
            return
        try:
            _, method = decode_method(payload)
        except AMQPConnectionError:
            return
        if isinstance(method, commands.Connection.Close):
            self.send_method(0, commands.Connection.CloseOk())
            self._finish()
        elif isinstance(method, commands.Connection.CloseOk):
            self._finish()

    def _open_channel(self, channel_id: int, frame_type: int, payload: bytes) -> None:
        if frame_type != FRAME_METHOD:
            raise expected_method_frame()
        index, method = decode_method(payload)
        if not isinstance(method, commands.Channel.Open):
            raise expected_channel_open(index >> 16, index & 0xFFFF)
        # RabbitMQ limits how many channels are open, not which numbers they use.
        if len(self.channels) >= self.channel_max:
            raise channel_max_reached(len(self.channels), self.channel_max)
        self.channels[channel_id] = Channel(self, channel_id, self._session())
        self.broker.counters.channels_opened += 1
        self.send(channel_open_ok_frame(channel_id))

    def _session(self) -> Session:
        """What a new channel shares with the others: all of it is settled by the time channels open."""
        cancel_notify = bool(self.client_capabilities.get("consumer_cancel_notify"))
        return Session(
            self.peer,
            cancel_notify,
            self.broker.reply_to,
            self.broker.limits.max_message_size,
            self.broker.consumer_timeouts.wake,
        )

    def channel_closed(self, channel_id: int) -> None:
        """A channel finished closing; its number may be opened again."""
        channel = self.channels.pop(channel_id, None)
        if channel is not None:
            self.broker.counters.channel_closed(channel)

    # ------------------------------------------------------------- handshake

    def _handle_method0(self, payload: bytes) -> None:
        _, method = decode_method(payload)
        handler = _HANDSHAKE.get((self.state, type(method)))
        if handler is not None:
            handler(self, method)
        elif isinstance(method, commands.Connection.Close):
            self._on_close(method)
        elif isinstance(method, commands.Connection.CloseOk):
            return  # a stray close-ok is harmless
        elif self.state is State.OPEN and isinstance(
            method, (commands.Connection.Blocked, commands.Connection.Unblocked)
        ):
            return
        else:
            class_id, method_id = _METHOD_IDS.unpack_from(payload)  # the fast-decoded Publish has no .index
            raise unexpected_connection_method(_RABBIT_STATE_NAMES[self.state], class_id, method_id)

    def _start(self) -> None:
        self.state = State.AWAITING_START_OK
        self.send_method(0, handshake.start_method())

    def _on_start_ok(self, method: commands.Connection.StartOk) -> None:
        self.client_properties = method.client_properties or {}
        capabilities = self.client_properties.get("capabilities")
        self.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
        username, password = handshake.credentials(method)
        self.auth_mechanism = method.mechanism
        self.broker.counters.auth_attempts += 1
        if self.broker.access.authenticate(username, password, self.peer.rsplit(":", 1)[0]) is None:
            self.broker.counters.auth_failed += 1
            log.warning(
                "login refused for user '%s' from %s",
                username,
                self.peer,
                extra={"peer": self.peer, "user": username, "mechanism": method.mechanism},
            )
            if not self.client_capabilities.get("authentication_failure_close"):
                self._finish()  # old clients expect the socket to close (RabbitMQ does the same)
                return
            raise login_refused(method.mechanism)
        self.username = username
        self.state = State.AWAITING_TUNE_OK
        limits = self.broker.limits
        self.send_method(
            0,
            commands.Connection.Tune(
                channel_max=limits.channel_max, frame_max=limits.frame_max, heartbeat=limits.heartbeat
            ),
        )

    def _on_tune_ok(self, method: commands.Connection.TuneOk) -> None:
        handshake.check_tune(method, self.broker.limits.frame_max, self.broker.limits.channel_max)
        self.writer.frame_max = method.frame_max
        self.channel_max = method.channel_max
        self.heartbeat = method.heartbeat
        self._reader.max_frame_size = self.frame_max
        self.state = State.AWAITING_OPEN

    def _on_open(self, method: commands.Connection.Open) -> None:
        vhost = self.broker.vhosts.get(method.virtual_host)
        if vhost is None:
            raise vhost_not_found(method.virtual_host)
        if not self.broker.access.may_open(self.username, vhost.name):
            raise vhost_access_refused(vhost.name, self.username)
        self.vhost = vhost
        self.state = State.OPEN
        self._counted_open = True
        self.broker.counters.connections_opened += 1
        self.send_method(0, commands.Connection.OpenOk())

    def _on_update_secret(self, method: commands.Connection.UpdateSecret) -> None:
        """Accepted as RabbitMQ 3.10 accepts it for users of its internal database: without a check.

        Probed: right, wrong and empty secrets all get update-secret-ok and the connection works on, since
        RabbitMQ's internal backend cannot expire and so has no state to refresh (only OAuth-like backends
        check the new secret). Before connection.open, or on a channel other than 0, the method falls to
        the same errors as any misplaced connection method, with RabbitMQ's codes and texts.
        """
        self.send_method(0, commands.Connection.UpdateSecretOk())

    def _on_close(self, method: commands.Connection.Close) -> None:
        self.send_method(0, commands.Connection.CloseOk())
        self._release_channels()
        self.state = State.CLOSE_OK_SENT
        self._close_deadline = self.broker.clock() + LINGER_TIMEOUT

    # -------------------------------------------------------------- teardown

    def _release_channels(self) -> None:
        for channel in list(self.channels.values()):
            channel.release()
            channel.state = ChannelState.CLOSED  # late store syncs must not write to a dead connection
            self.broker.counters.channel_closed(channel)
        self.channels.clear()
        for queue in [q for q in self.vhost.queues.values() if q.exclusive_owner is self]:
            self.vhost.delete_queue(queue)

    def _finish(self) -> None:
        self._release_channels()
        self.state = State.CLOSED
        self.broker.connections.discard(self)
        if self._counted_open:
            self._counted_open = False
            self.broker.counters.connection_closed(self)  # its octets stay in its vhost's statistics
        if self.writer.on_output is not None:
            self.writer.on_output()  # let the I/O layer flush what is left and close the transport


# where receive_data reads nothing more; a typed constant, not a tuple display, so that mypy does not narrow
# ``self.state`` for the rest of receive_data (the frames it handles may close the connection)
_STOPPED: tuple[State, ...] = (State.CLOSED, State.CLOSE_OK_SENT)

_RABBIT_STATE_NAMES = {
    State.AWAITING_START_OK: "starting",
    State.AWAITING_TUNE_OK: "tuning",
    State.AWAITING_OPEN: "opening",
    State.OPEN: "running",
}

_HANDSHAKE: dict[tuple[State, type], Callable[[Connection, Any], None]] = {
    (State.AWAITING_START_OK, commands.Connection.StartOk): Connection._on_start_ok,
    (State.AWAITING_TUNE_OK, commands.Connection.TuneOk): Connection._on_tune_ok,
    (State.AWAITING_OPEN, commands.Connection.Open): Connection._on_open,
    (State.OPEN, commands.Connection.UpdateSecret): Connection._on_update_secret,
}
