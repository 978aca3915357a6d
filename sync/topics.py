"""MQTT contract v1 topic names: `kiosk/v1/{terminal}/…` (docs/mqtt.md)."""

from __future__ import annotations

import re

PREFIX = "kiosk/v1"

# terminal → desk
STATE = "state"  # retained, QoS 1, Last Will
HEALTH = "health"  # retained, QoS 1
PAYMENTS = "payments"  # QoS 1, signed record batches
EVENTS = "events"  # QoS 1, signed record batches
CMD_RESULT = "cmd/result"  # QoS 1, signed
# desk → terminal
CMD = "cmd"  # QoS 1, never retained, signed
ACK = "ack"  # QoS 1, signed
PAYMENT_STATUS = "payment_status"  # QoS 1, signed
CONFIG = "config"  # retained, QoS 1, signed, versioned

UP = (STATE, HEALTH, PAYMENTS, EVENTS, CMD_RESULT)
DOWN = (CMD, ACK, PAYMENT_STATUS, CONFIG)
# With `[mqtt] light_session` these are subscribed at QoS 0: the broker keeps nothing of
# them for an absent terminal. Nothing is lost: every reconnect resends the unacknowledged
# records (the desk acks them again), and every subscribe brings the retained config.
# cmd and payment_status stay QoS 1: only the broker's session holds them while away.
LIGHT = (ACK, CONFIG)

# A terminal id is a whole topic level: never a wildcard or a separator (CVE-2017-7650).
TERMINAL_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")


def valid_terminal_id(terminal_id: str) -> bool:
    return bool(TERMINAL_ID_RE.match(terminal_id))


def topic(terminal_id: str, leaf: str) -> str:
    if not valid_terminal_id(terminal_id):
        raise ValueError(f"terminal id {terminal_id!r} cannot be a topic level")
    return f"{PREFIX}/{terminal_id}/{leaf}"


def split(topic_name: str) -> tuple[str, str] | None:
    """(terminal id, leaf) of a contract topic, or None."""
    parts = topic_name.split("/", 3)
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    terminal_id, leaf = parts[2], parts[3]
    if not valid_terminal_id(terminal_id) or leaf not in UP + DOWN:
        return None
    return terminal_id, leaf


def desk_filter(leaf: str) -> str:
    """What a desk consumer subscribes to for one leaf, all terminals."""
    return f"{PREFIX}/+/{leaf}"
