"""Ports for the servers tests start: below the ephemeral range, never handed out twice
(agent/loopback.py). The race it closes: a NATS node's outgoing route took, as its source
port, the monitor port chosen for the next node, which then could not start."""

from __future__ import annotations

import socket

import pytest

from agent.loopback import LOWEST, ephemeral_range, free_port, port_open


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    lo, _hi = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= p < lo for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # nothing holds it


def test_an_outgoing_connection_never_takes_a_port_handed_out():
    """Source ports of connect() come from the ephemeral range; ours do not."""
    lo, hi = ephemeral_range()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        clients = [socket.create_connection(server.getsockname()) for _ in range(50)]
        try:
            sources = {c.getsockname()[1] for c in clients}
            assert all(lo <= p <= hi for p in sources)
            assert not sources & {free_port() for _ in range(50)}
        finally:
            for c in clients:
                c.close()


def test_a_busy_port_is_skipped(mocker):
    import random

    from agent import loopback

    with socket.socket() as held:
        busy = free_port()
        loopback._given.discard(busy)  # as if another process had bound it
        held.bind(("127.0.0.1", busy))
        real = random.randint
        picks = iter([busy, busy])
        spy = mocker.patch("agent.loopback.random.randint",
                           side_effect=lambda a, b: next(picks, None) or real(a, b))
        port = free_port()
        assert port != busy and spy.call_count >= 3
        assert not port_open(busy)  # bound, not listening


def test_a_low_or_unreadable_ephemeral_range(tmp_path):
    low = tmp_path / "range"
    low.write_text("1024\t65535\n")
    assert ephemeral_range(low) == (1024, 65535)
    port = free_port(path=low)  # no room below it: the kernel's choice
    assert 1024 <= port <= 65535
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    (tmp_path / "bad").write_text("garbage")
    assert ephemeral_range(tmp_path / "bad") == (32768, 60999)


def test_port_open_sees_a_listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen(1)
        assert port_open(server.getsockname()[1])


def test_exhaustion_is_a_clear_error(mocker):
    mocker.patch("agent.loopback._bindable", return_value=False)
    with pytest.raises(OSError, match="no free port"):
        free_port()
