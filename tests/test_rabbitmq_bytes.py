"""Every method the broker sends, byte for byte against what RabbitMQ 3.10.8 sends for the same input.

The expected argument bytes were captured from a real RabbitMQ with a raw socket client
(``interop_tests/raw_client.py``) running the sequence below; the same sequence runs here
on the sans-IO core.  The reserved fields are where clients in other languages are strict:
amqp-client.js skips exactly the four bytes of an *empty* longstr for channel.open-ok's
channel-id, so pamqp's default ("0") cost it frame sync on every channel.  The reserved
fields the server sends in 0-9-1 are channel.open-ok channel-id (longstr), connection.open-ok
known-hosts (shortstr) and basic.get-empty cluster-id (shortstr); all three must be empty.
"""

from __future__ import annotations

import struct

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker
from tests.frames import PROTOCOL_HEADER, FakeClock, Peer, method, open_peer, publish

_FRAME = struct.Struct(">BHI")
_IDS = struct.Struct(">HH")


def sent(peer: Peer) -> list[tuple[int, int, str, str]]:
    """Broker output as ``(frame type, channel, method name or "", argument bytes as hex)``."""
    data = peer.connection.data_to_send()
    frames = []
    while data:
        frame_type, channel, size = _FRAME.unpack_from(data)
        assert data[7 + size] == 0xCE
        payload = data[7 : 7 + size]
        if frame_type == 1:
            class_id, method_id = _IDS.unpack_from(payload)
            name = commands.INDEX_MAPPING[(class_id << 16) | method_id].name
            frames.append((frame_type, channel, name, payload[4:].hex()))
        else:
            frames.append((frame_type, channel, "", payload.hex()))
        data = data[8 + size :]
    return frames


def close(reply_code: int = 200, reply_text: str = "bye") -> commands.Channel.Close:
    return commands.Channel.Close(reply_code=reply_code, reply_text=reply_text, class_id=0, method_id=0)


HEADER_3 = "003c000000000000000000030000"  # basic class, body size 3, no properties
BODY_ABC = "616263"

# (what the client sends, what RabbitMQ 3.10.8 answered: (frame type, channel, method, argument hex))
SEQUENCE = [
    (
        method(0, commands.Connection.UpdateSecret(new_secret="new", reason="rotation")),
        [(1, 0, "Connection.UpdateSecretOk", "")],
    ),
    (method(1, commands.Channel.Open()), [(1, 1, "Channel.OpenOk", "00000000")]),
    (method(1, commands.Channel.Flow(active=True)), [(1, 1, "Channel.FlowOk", "01")]),
    (
        method(1, commands.Exchange.Declare(exchange="probe.x", exchange_type="fanout")),
        [(1, 1, "Exchange.DeclareOk", "")],
    ),
    (
        method(1, commands.Exchange.Declare(exchange="probe.x2", exchange_type="fanout")),
        [(1, 1, "Exchange.DeclareOk", "")],
    ),
    (method(1, commands.Exchange.Bind(destination="probe.x2", source="probe.x")), [(1, 1, "Exchange.BindOk", "")]),
    (method(1, commands.Exchange.Unbind(destination="probe.x2", source="probe.x")), [(1, 1, "Exchange.UnbindOk", "")]),
    (
        method(1, commands.Queue.Declare(queue="probe.q")),
        [(1, 1, "Queue.DeclareOk", "0770726f62652e710000000000000000")],
    ),
    (method(1, commands.Queue.Bind(queue="probe.q", exchange="probe.x")), [(1, 1, "Queue.BindOk", "")]),
    (method(1, commands.Queue.Unbind(queue="probe.q", exchange="probe.x")), [(1, 1, "Queue.UnbindOk", "")]),
    (method(1, commands.Queue.Purge(queue="probe.q")), [(1, 1, "Queue.PurgeOk", "00000000")]),
    (method(1, commands.Basic.Qos(prefetch_count=10)), [(1, 1, "Basic.QosOk", "")]),
    (method(1, commands.Basic.Get(queue="probe.q")), [(1, 1, "Basic.GetEmpty", "00")]),
    (method(1, commands.Confirm.Select()), [(1, 1, "Confirm.SelectOk", "")]),
    (publish(1, "probe.q", b"abc"), [(1, 1, "Basic.Ack", "000000000000000100")]),
    (
        publish(1, "nowhere", b"abc", mandatory=True),
        [
            (1, 1, "Basic.Return", "0138084e4f5f524f55544500076e6f7768657265"),
            (2, 1, "", HEADER_3),
            (3, 1, "", BODY_ABC),
            (1, 1, "Basic.Ack", "000000000000000200"),
        ],
    ),
    (
        method(1, commands.Basic.Get(queue="probe.q")),
        [
            (1, 1, "Basic.GetOk", "000000000000000100000770726f62652e7100000000"),
            (2, 1, "", HEADER_3),
            (3, 1, "", BODY_ABC),
        ],
    ),
    (method(1, commands.Basic.Recover(requeue=True)), [(1, 1, "Basic.RecoverOk", "")]),
    (
        method(1, commands.Basic.Consume(queue="probe.q", consumer_tag="ctag")),
        [
            (1, 1, "Basic.ConsumeOk", "0463746167"),
            (1, 1, "Basic.Deliver", "0463746167000000000000000201000770726f62652e71"),
            (2, 1, "", HEADER_3),
            (3, 1, "", BODY_ABC),
        ],
    ),
    (method(1, commands.Basic.Cancel(consumer_tag="ctag")), [(1, 1, "Basic.CancelOk", "0463746167")]),
    (method(1, commands.Exchange.Delete(exchange="probe.x")), [(1, 1, "Exchange.DeleteOk", "")]),
    (method(2, commands.Channel.Open()), [(1, 2, "Channel.OpenOk", "00000000")]),
    (method(2, commands.Tx.Select()), [(1, 2, "Tx.SelectOk", "")]),
    (method(2, commands.Tx.Commit()), [(1, 2, "Tx.CommitOk", "")]),
    (method(2, commands.Tx.Rollback()), [(1, 2, "Tx.RollbackOk", "")]),
    (method(3, commands.Channel.Open()), [(1, 3, "Channel.OpenOk", "00000000")]),
    (
        method(3, commands.Basic.Nack(delivery_tag=99)),
        [
            (
                1,
                3,
                "Channel.Close",
                "01962d505245434f4e444954494f4e5f4641494c4544202d20756e6b6e6f776e2064656c6976657279"
                "20746167203939003c0078",
            )
        ],
    ),
    (method(3, commands.Channel.CloseOk()), []),
    (method(2, close()), [(1, 2, "Channel.CloseOk", "")]),
    (
        method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)),
        [(1, 0, "Connection.CloseOk", "")],
    ),
]


def test_handshake_bytes_match_rabbitmq():
    peer = Peer(Broker(clock=FakeClock()))
    peer.send(PROTOCOL_HEADER)
    [(frame_type, channel, name, arguments)] = sent(peer)
    assert (frame_type, channel, name) == (1, 0, "Connection.Start")
    assert arguments.startswith("0009")  # version 0-9
    assert bytes.fromhex(arguments).endswith(b"\x00\x00\x00\x0ePLAIN AMQPLAIN\x00\x00\x00\x05en_US")
    peer.send_method(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\0guest\0guest"))
    assert sent(peer) == [(1, 0, "Connection.Tune", "07ff00020000003c")]  # 2047, 131072, 60 s
    peer.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    assert sent(peer) == [(1, 0, "Connection.OpenOk", "00")]  # reserved known-hosts: empty shortstr


def test_every_reply_matches_rabbitmq_bytes():
    peer = Peer(Broker(clock=FakeClock()))
    peer.handshake(capabilities={"publisher_confirms": True})
    for frames, expected in SEQUENCE:
        peer.send(frames)
        assert sent(peer) == expected, frames


@pytest.mark.parametrize("channel", [1, 2, 255, 2047])
def test_channel_open_ok_reserved_channel_id_is_an_empty_longstr(channel):
    peer = Peer(Broker(clock=FakeClock()))
    peer.handshake()
    peer.send_method(channel, commands.Channel.Open())
    assert peer.connection.data_to_send() == struct.pack(">BHIHHI", 1, channel, 8, 20, 11, 0) + b"\xce"


def test_get_empty_reserved_cluster_id_is_an_empty_shortstr():
    peer = open_peer()
    peer.send_method(1, commands.Queue.Declare(queue="q"))
    peer.connection.data_to_send()
    peer.send_method(1, commands.Basic.Get(queue="q"))
    assert peer.connection.data_to_send() == struct.pack(">BHIHHB", 1, 1, 5, 60, 72, 0) + b"\xce"


def test_connection_open_ok_reserved_known_hosts_is_an_empty_shortstr():
    peer = Peer(Broker(clock=FakeClock()))
    peer.send(PROTOCOL_HEADER)
    peer.send_method(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\0guest\0guest"))
    peer.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    peer.connection.data_to_send()
    peer.send_method(0, commands.Connection.Open(virtual_host="/"))
    assert peer.connection.data_to_send() == struct.pack(">BHIHHB", 1, 0, 5, 10, 41, 0) + b"\xce"
