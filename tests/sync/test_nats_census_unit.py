"""The shipped census timer (deploy/systemd/kiosk-nats-census.service and .timer)
verifies, and its ExecStart, run as the unit would against a real 3-node cluster, prints
the census and exits as the unit's SuccessExitStatus expects."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sync import topics
from tests.sync.conftest import wait_for
from tests.sync.nats import NatsCluster, max_consumers_for, nats_server_path
from tests.systemd_units import env_file_variables, exec_start_variables, verify_unit

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "deploy" / "systemd" / "kiosk-nats-census.service"
TIMER = ROOT / "deploy" / "systemd" / "kiosk-nats-census.timer"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "nats-census.env.example"
INSTALLED_PYTHON = "/opt/kiosk-agent/venv/bin/python"
ENV_FILE = "/etc/kiosk/nats-census.env"


def _directive(text: str, key: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(f"{key}=")).split("=", 1)[1]


def test_the_census_service_and_its_timer_verify(tmp_path: Path) -> None:
    text = SERVICE.read_text(encoding="utf-8")
    assert INSTALLED_PYTHON in text and f"EnvironmentFile={ENV_FILE}" in text
    verified = verify_unit(tmp_path, SERVICE,
                           {INSTALLED_PYTHON: ROOT / ".venv" / "bin" / "python"},
                           {ENV_FILE: ENV_EXAMPLE}, also=[TIMER])
    result = verified.result
    assert result.returncode == 0, result.stdout + result.stderr
    assert INSTALLED_PYTHON not in verified.text and ENV_FILE not in verified.text
    # the shipped example gives every variable the command line takes
    used = exec_start_variables(text)
    assert used == {"KIOSK_NATS_MONITORS"} and used <= env_file_variables(ENV_EXAMPLE).keys()
    # leftovers alone (exit 3) are logged, not a failure; the limit alarm (4) and no node
    # answering (1) fail the unit
    assert _directive(text, "SuccessExitStatus").split() == ["3"]
    assert _directive(text, "Type") == "oneshot"
    assert _directive(TIMER.read_text(encoding="utf-8"), "OnUnitActiveSec") == "1h"


def test_its_command_counts_a_real_cluster_as_the_unit_runs_it(tmp_path: Path) -> None:
    """ExecStart with the monitors the shipped example gives, pointed at this cluster's
    nodes, from outside the checkout:
    one kept session with two QoS 1 subscriptions gives 2 consumers for 2 subscriptions,
    exit 0, and the limit the binary applies (none before NATS 2.15)."""
    cluster = NatsCluster(tmp_path / "nats").start()
    granted: list[int] = []
    term = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="T-0007",
                       protocol=mqtt.MQTTv311, clean_session=False)
    try:
        term.on_subscribe = lambda _c, _u, _m, rcs, _p: granted.extend(r.value for r in rcs)
        term.connect("127.0.0.1", cluster.nodes[0].mqtt_port)
        term.loop_start()
        wait_for(term.is_connected, 20, "the terminal connected")
        term.subscribe([(topics.topic("T-0007", leaf), 1) for leaf in (topics.ACK, topics.CMD)])
        wait_for(lambda: len(granted) == 2, 30, "two subscriptions granted")
        # the example's shape (a --monitor host:port per node), with this cluster's ports
        shape = shlex.split(env_file_variables(ENV_EXAMPLE)["KIOSK_NATS_MONITORS"])
        flags, addresses = shape[::2], shape[1::2]
        assert flags == ["--monitor"] * len(cluster.nodes), shape
        assert len(addresses) == len(cluster.nodes), shape
        assert all(re.fullmatch(r"[\w.-]+:\d+", a) for a in addresses), shape
        monitors = " ".join(f"{flag} 127.0.0.1:{node.monitor_port}"
                            for flag, node in zip(flags, cluster.nodes, strict=True))
        line = _directive(SERVICE.read_text(encoding="utf-8"), "ExecStart")
        argv = [sys.executable if a == INSTALLED_PYTHON else a
                for a in shlex.split(line.replace("$KIOSK_NATS_MONITORS", monitors))]
        assert argv[1:3] == ["-m", "sync.nats_kit"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "(3 of 3 nodes answering): 2 for 2 subscriptions; 0 subscriptions" \
            in result.stdout, result.stdout
        exe = nats_server_path()
        assert exe, "the cluster started, so a nats-server was found"
        limit = max_consumers_for(exe)
        expected = (f"the stream's consumer limit {limit} (0.0% used)" if limit
                    else "no consumer limit on these nodes")
        assert expected in result.stdout, result.stdout
    finally:
        term.loop_stop()
        term.disconnect()
        cluster.stop()
