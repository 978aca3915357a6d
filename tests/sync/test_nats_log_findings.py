"""The fleet bench's reading of nats-server logs: when the fleet does not come back after a
restart, the report carries the nodes' own warnings grouped by shape, not a raw dump."""

from __future__ import annotations

from bench.fleet_nats import log_findings

LOG = """\
[4242] 2026/12/05 03:55:01.123456 [INF] Starting nats-server
[4242] 2026/12/05 03:55:02.000001 [WRN] JetStream request for "$MQTT_sess" timed out after 4s
[4242] 2026/12/05 03:55:03.000001 [WRN] JetStream request for "$MQTT_sess" timed out after 4s
[4242] 2026/12/05 03:55:04.000001 [ERR] 127.0.0.1:51234 - mid:17 - "T0001" - connect: timeout
[4242] 2026/12/05 03:55:05.000001 [ERR] 127.0.0.1:51299 - mid:18 - "T0002" - connect: timeout
[4242] 2026/12/05 03:55:06.000001 [ERR] 127.0.0.1:51300 - mid:19 - "T0003" - connect: timeout
not a log line at all
"""


def test_warnings_and_errors_are_grouped_by_shape_most_frequent_first():
    found = log_findings(LOG)
    assert [count for _, count in found] == [3, 2]
    first, _ = found[0]
    assert first.startswith("[ERR] 127.0.0.1:51234") and "connect: timeout" in first
    assert found[1][0].startswith('[WRN] JetStream request for "$MQTT_sess"')


def test_info_lines_and_garbage_are_not_findings():
    assert log_findings("[1] 2026/12/05 00:00:00.0 [INF] Server is ready\n\x00\xff junk") == []
