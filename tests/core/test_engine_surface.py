"""The engine's public door: the frozen status view, the between-customers rule, desk
configuration, restarts, and no module outside kiosk/engine/ taking its lock or reading
its private state."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from drivers.acceptor import EscrowDecision
from kiosk import service
from kiosk.engine import EngineStatus, IntentError

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PACKAGE = ROOT / "kiosk" / "engine"


def test_status_is_a_frozen_copy_taken_at_one_moment(term):
    before = term.engine.status()
    assert isinstance(before, EngineStatus)
    assert before.screen.value == "idle" and before.in_service and before.between_customers
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.support_phone = "0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.out_of_service["service"] = "x"  # type: ignore[index]
    term.engine.set_out_of_service("service", "technician service mode")
    assert dict(before.out_of_service) == {}  # the earlier view did not change
    after = term.engine.status()
    assert dict(after.out_of_service) == {"service": "technician service mode"}
    assert after.screen.value == "out_of_service" and not after.in_service


def test_engine_state_is_read_only_from_outside(term):
    """Changed only through the engine's methods (the desk's phone: set_support_phone)."""
    with pytest.raises(AttributeError):
        term.engine.support_phone = "0"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        term.engine.screen = term.engine.screen  # type: ignore[misc]
    with pytest.raises(TypeError):
        term.engine.oos_reasons["service"] = "x"  # type: ignore[index]
    assert term.engine.status().in_service
    term.engine.set_support_phone("8 800 200-00-00")
    assert term.engine.snapshot()["terminal"]["support_phone"] == "8 800 200-00-00"


def test_run_exclusive_refuses_while_a_customer_pays_and_runs_between_customers(term):
    term.to_cash()
    term.acceptor.insert(500)
    ran: list[str] = []
    with pytest.raises(IntentError) as refused:
        term.engine.run_exclusive(lambda: ran.append("encash"))
    assert refused.value.code == "busy" and ran == []
    with pytest.raises(IntentError) as busy:
        service.encash(term.engine, "tech")  # the cassette is never emptied under a customer
    assert busy.value.code == "busy"
    assert term.engine.run_exclusive(lambda: "read", between_customers=False) == "read"
    term.intent("pay")
    term.drain()
    term.intent("done")
    assert term.engine.run_exclusive(lambda: ran.append("encash")) is None
    assert ran == ["encash"]


def test_restart_is_asked_only_between_customers(term):
    term.to_cash()
    assert term.engine.request_restart() is False
    assert term.engine.restart_requested is False
    term.intent("cancel")
    assert term.engine.request_restart() is True
    assert term.engine.restart_requested and term.engine.status().restart_requested


def test_desk_config_applies_every_part_at_once_with_one_snapshot(term):
    old = term.engine.config.catalog
    catalog = dataclasses.replace(old, providers=tuple(p for p in old.providers if p.id == "mts"))
    seq = term.engine.snapshot()["seq"]
    term.engine.apply_desk_config(
        version=7,
        catalog=catalog,
        support_phone="8 800 100-00-00",
        help_texts={"how_to_pay": {"ru": "Вставьте купюры", "en": "Insert bills"}},
    )
    snap = term.snapshots[-1]
    assert snap["seq"] == seq + 1  # one publish for the whole document
    assert (snap["config_version"], snap["terminal"]["support_phone"]) == (7, "8 800 100-00-00")
    assert snap["help_texts"]["how_to_pay"]["en"] == "Insert bills"
    assert [p.id for p in term.engine.config.catalog.providers] == ["mts"]
    term.engine.apply_desk_config(version=8, publish=False)  # None parts stay as they are
    assert term.engine.status().config_version == 8
    assert term.engine.support_phone == "8 800 100-00-00"
    assert term.snapshots[-1]["seq"] == seq + 1


def test_acceptor_test_bills_are_returned_and_listed(term):
    result = service.acceptor_test(term.engine, True)
    assert result == {"on": True, "bills_seen": []}
    assert term.engine.status().out_of_service.keys() == {"service"}
    assert term.acceptor.escrow(500) is EscrowDecision.RETURN
    seen = service.acceptor_test_results(term.engine)["bills_seen"]
    assert [(b["amount_minor"], b["decision"]) for b in seen] == [(50_000, "return")]
    assert service.acceptor_test(term.engine, False)["on"] is False
    assert term.engine.status().acceptor_test is None and term.engine.status().in_service


def _offences(path: Path) -> list[str]:
    """`x.engine.lock`, `engine._anything`, `x.engine._anything` in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        name = (
            owner.id if isinstance(owner, ast.Name)
            else owner.attr if isinstance(owner, ast.Attribute) else ""
        )
        if name == "engine" and (node.attr == "lock" or node.attr.startswith("_")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: engine.{node.attr}")
    return found


def test_nothing_outside_the_engine_takes_its_lock_or_reads_its_insides():
    sources = [
        p
        for folder in ("kiosk", "sync", "ui", "agent", "tests", "bench")
        if (ROOT / folder).is_dir()
        for p in (ROOT / folder).rglob("*.py")
        if ENGINE_PACKAGE not in p.parents
    ]
    assert len(sources) > 50  # the walk found the code
    offences = [o for p in sources for o in _offences(p)]
    assert offences == []
