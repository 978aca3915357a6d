"""The fleet bench's reading of mosquitto's log: connections the broker ended are
reported grouped by shape with the broker's own words, so a fleet that loses
connections while steady gets a named cause, not a guess."""

from __future__ import annotations

from bench.fleet import mosquitto_disconnects

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
