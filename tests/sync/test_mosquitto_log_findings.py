"""The fleet bench's reading of mosquitto's log: connections the broker ended are
reported grouped by shape with the broker's own words, so a fleet that loses
connections while steady gets a named cause, not a guess."""

from __future__ import annotations

import socket
import ssl

from bench.fleet import mosquitto_disconnects
from tests.sync.conftest import wait_for

LOG = """\
1796493918: mosquitto version 2.0.11 running
1796493919: New connection from 127.0.0.2:40112 on port 20610.
1796493919: New client connected from 127.0.0.2:40112 as F00001 (p5, c0, k30, u'F00001').
1796493950: Client F00001 has exceeded timeout, disconnecting.
1796493951: Client F00002 has exceeded timeout, disconnecting.
1796493952: Client F00417 has exceeded timeout, disconnecting.
1796493953: Client F00003 closed its connection.
1796493954: Client F00009 already connected, closing old connection.
1796493955: OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading
garbage \x00\xff without a timestamp: disconnect
"""


def test_ended_connections_are_grouped_by_shape_most_frequent_first():
    found = mosquitto_disconnects(LOG)
    assert [count for _, count in found] == [3, 1, 1]
    assert found[0][0] == "Client F00001 has exceeded timeout, disconnecting."
    assert {example for example, _ in found[1:]} == {
        "Client F00009 already connected, closing old connection.",
        "OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading"}


def test_normal_connects_clean_closes_and_garbage_are_not_findings():
    assert mosquitto_disconnects(
        "1: New connection from 127.0.0.2:1 on port 2.\n"
        "2: Client T1 closed its connection.\n\x00 disconnect junk") == []


def _connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s), as a terminal sends it."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 60]) + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def test_protocol_error_in_the_log_is_a_client_gone_before_its_connack(kit_broker):
    """After a TLS broker's restart the fleet bench's mosquitto logs 'Client … disconnected:
    Protocol error.' about as often as terminals gave up waiting for CONNACK. That is the
    broker's strerror(EPROTO) for its CONNACK written to a TLS connection the client had
    closed without close_notify: a terminal that gave up, not a bad packet. The same
    client reading its CONNACK first closes normally (docs/fleet.md, failure modes)."""
    kb = kit_broker
    ctx = ssl.create_default_context(cafile=str(kb.kit.terminal_ca))
    ctx.check_hostname = False  # the kit's certificate names the host, not 127.0.0.1
    for terminal_id, read_connack in (("T7001", False), ("T7002", True)):
        cert, key = kb.terminal(terminal_id)
        ctx.load_cert_chain(str(cert), str(key))
        raw = socket.create_connection(("127.0.0.1", kb.port), timeout=10)
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(_connect_packet(terminal_id))
            if read_connack:
                assert tls.recv(4)[:2] == b"\x20\x02", "CONNACK"
            # leaving the block closes the socket without close_notify, as a timeout does
    wait_for(lambda: "Client T7002 closed its connection." in kb.broker.log(), 10,
             "the second client's close in mosquitto's log")
    log = kb.broker.log()
    assert "Client T7001 disconnected: Protocol error." in log
    assert "Client T7002 disconnected" not in log
    assert ("Client T7001 disconnected: Protocol error.", 1) in mosquitto_disconnects(log)
