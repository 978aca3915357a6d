"""Finding payments the way an operator types a caller's number: any formatting, +7/8,
partial digits; by payment id, terminal, amount and time window; on both dialects."""

from __future__ import annotations

import pytest

from sync.cli import desk_main
from sync.desk_service.db import CommitStats, DeskDB
from sync.desk_service.search import (
    Query,
    find_payments,
    normalise_digits,
    parse_amount,
    parse_when,
)

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOUR_MS = 3_600_000


@pytest.mark.parametrize(("typed", "digits"), [
    ("+7 916 123-45-67", "9161234567"),
    ("8 (916) 123 45 67", "9161234567"),
    ("79161234567", "9161234567"),
    ("9161234567", "9161234567"),
    ("123-45-67", "1234567"),
    ("40817810099910004312", "40817810099910004312"),  # a bank account: kept whole
    ("+44 20 7946 0958", "442079460958"),
    ("нет цифр / no digits", None),
    ("", None),
    ("٩١٦", None),  # non-ASCII digits are not an account's digits
])
def test_normalise_digits(typed, digits):
    assert normalise_digits(typed) == digits


@pytest.mark.parametrize(("typed", "minor"), [
    ("500", 50_000), ("499.50", 49_950), ("499,5", 49_950), ("1 500", 150_000)])
def test_parse_amount(typed, minor):
    assert parse_amount(typed) == minor


@pytest.mark.parametrize("typed", ["5.555", "-1", "abc", ""])
def test_parse_amount_refuses(typed):
    with pytest.raises(ValueError):
        parse_amount(typed)


def test_parse_when_dates_and_ages():
    assert parse_when("2026-01-01") == T0
    assert parse_when("2026-01-01T01:00") == T0 + HOUR_MS
    assert parse_when("2h", now_s=T0 / 1000) == T0 - 2 * HOUR_MS
    with pytest.raises(ValueError):
        parse_when("yesterday-ish")


def _pay(seq: int, terminal: str, account: str, amount: int, at: int, count: int = 0
         ) -> dict:
    pid = f"{terminal}-{seq:08d}"
    return {"seq": seq + count * 1000, "ref": pid, "data": {
        "id": pid, "kind": "payment", "status": "queued", "provider_id": "mts",
        "account": account, "inserted_minor": amount, "commission_minor": 0,
        "credited_minor": amount, "currency": "RUB", "reprocess_count": count,
        "created_ms": at}}


@pytest.fixture
def filled(db_target):
    store = DeskDB(db_target)
    rows = {
        "T1": [_pay(1, "T1", "9161234567", 50_000, T0),
               _pay(2, "T1", "9167654321", 10_000, T0 + HOUR_MS),
               _pay(3, "T1", "4081781009991", 50_000, T0 + 2 * HOUR_MS)],
        "T2": [_pay(1, "T2", "9161234567", 20_000, T0 + 3 * HOUR_MS),
               _pay(1, "T2", "9031112233", 20_000, T0 + 4 * HOUR_MS, count=1)],
    }
    with store.transaction() as conn:
        for terminal, records in rows.items():
            store.commit_records(conn, terminal, "payment", records, CommitStats(), 1)
    yield store, db_target
    store.close()


def _ids(rows: list[dict]) -> list[tuple[str, int]]:
    return sorted((r["payment_id"], r["reprocess_count"]) for r in rows)


@pytest.mark.parametrize("typed", ["+7 916 123-45-67", "8(916)1234567", "916 123 45 67",
                                   "1234567", "45-67"])
def test_a_phone_in_any_formatting_finds_both_terminals(filled, typed):
    store, _ = filled
    assert _ids(find_payments(store.engine, Query(text=typed))) == [
        ("T1-00000001", 0), ("T2-00000001", 0)]


def test_filters_combine(filled):
    store, _ = filled
    e = store.engine
    assert _ids(find_payments(e, Query(text="9161234567", terminal_id="T2"))) == [
        ("T2-00000001", 0)]
    assert _ids(find_payments(e, Query(amount_minor=50_000))) == [
        ("T1-00000001", 0), ("T1-00000003", 0)]
    assert _ids(find_payments(e, Query(since_ms=T0 + HOUR_MS, until_ms=T0 + 3 * HOUR_MS))
                ) == [("T1-00000002", 0), ("T1-00000003", 0)]
    assert _ids(find_payments(e, Query(text="t2-00000001"))) == [
        ("T2-00000001", 0), ("T2-00000001", 1)]
    assert _ids(find_payments(e, Query(text="00000003"))) == [("T1-00000003", 0)]
    newest = find_payments(e, Query(terminal_id="T2"))
    assert [r["created_ms"] for r in newest] == sorted(
        (r["created_ms"] for r in newest), reverse=True)


@pytest.mark.parametrize("typed", ["' OR '1'='1", "%", "T1-%", "T_-00000001",
                                   "9161234567'; DROP TABLE payments; --"])
def test_query_text_is_data_never_sql(filled, typed):
    """Whatever is typed, only its digits (or a plain payment id) reach the query, as a
    bound parameter: quotes and wildcards select nothing extra."""
    store, _ = filled
    digits = normalise_digits(typed)
    try:
        found = find_payments(store.engine, Query(text=typed))
    except ValueError:
        assert digits is None or len(digits) < 3
        found = []
    else:
        assert digits is not None
        assert _ids(found) == _ids(find_payments(store.engine, Query(text=digits)))
    assert len(found) < 5
    assert len(store.payments()) == 5  # nothing dropped


def test_too_short_a_query_is_refused_with_a_reason(filled):
    store, _ = filled
    with pytest.raises(ValueError, match="at least 3 digits"):
        find_payments(store.engine, Query(text="45"))


def test_kiosk_desk_find(filled, capsys):
    _, target = filled
    assert desk_main(["--db", target, "find", "+7 (916) 123-45-67", "--amount", "200"]) == 0
    out = capsys.readouterr().out
    assert "T2-00000001" in out and "T1-00000001" not in out and "1 found" in out
    assert desk_main(["--db", target, "find", "--terminal", "T1",
                      "--since", "2026-01-01T01:00"]) == 0
    assert "2 found" in capsys.readouterr().out
    assert desk_main(["--db", target, "find", "9999999"]) == 1
    assert "0 found" in capsys.readouterr().out
    assert desk_main(["--db", target, "find", "12"]) == 2
    assert "at least 3 digits" in capsys.readouterr().err


def test_a_whole_id_or_account_is_found_exactly_first_then_as_a_part(db_target):
    """A whole 10-digit account or payment id is an index lookup; the substring match
    (a full table read on a large desk) runs only when nothing matches exactly."""
    store = DeskDB(db_target)
    try:
        with store.transaction() as conn:
            store.commit_records(conn, "T1", "payment", [
                _pay(1, "T1", "9161234567", 50_000, T0),
                _pay(2, "T1", "40916123456700", 10_000, T0 + HOUR_MS),  # contains it
                _pay(3, "T1", "40903111223300", 10_000, T0 + 2 * HOUR_MS),
            ], CommitStats(), 1)
        e = store.engine
        assert _ids(find_payments(e, Query(text="+7 916 123-45-67"))) == [("T1-00000001", 0)]
        # nobody has 903 111-22-33 as the whole account: the part of a longer one is found
        assert _ids(find_payments(e, Query(text="8 903 111-22-33"))) == [("T1-00000003", 0)]
        assert _ids(find_payments(e, Query(text="T1-00000002"))) == [("T1-00000002", 0)]
        assert _ids(find_payments(e, Query(text="t1-00000002"))) == [("T1-00000002", 0)]
    finally:
        store.close()
