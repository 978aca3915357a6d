"""Pure parts of the sync layer: backoff, topics, command and config-document checks."""

from __future__ import annotations

import pytest

from kiosk.catalog import DEMO_CATALOG
from sync import topics
from sync.backoff import Backoff
from sync.commands import MAX_SEQ_STEP, CommandError, check_fresh, check_seq, parse_command
from sync.desk_config import ConfigDocError, parse_config_doc

NOW = 1_800_000_000_000


def test_backoff_is_jittered_capped_and_resets():
    draws: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return b

    b = Backoff(1.0, 8.0, rng=uniform)
    delays = [b.next_delay() for _ in range(6)]
    assert draws[:4] == [(1.0, 2.0), (1.0, 4.0), (1.0, 8.0), (1.0, 8.0)]
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next_delay() == 2.0


def test_backoff_real_jitter_spreads_a_fleet():
    firsts = {round(Backoff(1.0, 60.0).next_delay(), 3) for _ in range(50)}
    assert len(firsts) > 40  # not one synchronised wave
    assert all(1.0 <= d <= 2.0 for d in firsts)


def test_topics():
    assert topics.topic("T0001", topics.CMD) == "kiosk/v1/T0001/cmd"
    assert topics.split("kiosk/v1/T0001/cmd/result") == ("T0001", "cmd/result")
    assert topics.split("kiosk/v1/T0001/other") is None
    assert topics.split("kiosk/v2/T0001/cmd") is None
    for bad in ("+", "#", "a/b", "", "x" * 33):
        with pytest.raises(ValueError):
            topics.topic(bad, topics.CMD)


def _cmd(**changes):  # type: ignore[no-untyped-def]
    body = {
        "cmd_id": "c-1",
        "terminal_id": "T1",
        "type": "set_support_phone",
        "args": {"phone": "8 800 100-20-30"},
        "issued_ms": NOW,
        "expires_ms": NOW + 60_000,
        "seq": 5,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_parse_command_ok():
    cmd = parse_command(_cmd())
    assert (cmd.type, cmd.args, cmd.seq) == ("set_support_phone", {"phone": "8 800 100-20-30"}, 5)
    re = parse_command(
        _cmd(type="reprocess", args={"payment_id": "T1-00000001", "account": "9160000000"})
    )
    assert re.args == {"payment_id": "T1-00000001", "account": "9160000000", "reason": "",
                       "reprocess_count": None}
    un = parse_command(_cmd(type="reprocess_unclaimed", args={
        "record_id": "T1-00000002", "provider_id": "mts", "account": "9160000000"}))
    assert un.args["record_id"] == "T1-00000002" and un.args["provider_id"] == "mts"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"cmd_id": ...}, "malformed"),
        ({"cmd_id": "a/b"}, "malformed"),
        ({"cmd_id": 7}, "malformed"),
        ({"terminal_id": ...}, "malformed"),
        ({"type": "format_disk"}, "unknown_type"),
        ({"args": []}, "malformed"),
        ({"issued_ms": "now"}, "malformed"),
        ({"issued_ms": True}, "malformed"),
        ({"expires_ms": NOW}, "malformed"),
        ({"expires_ms": NOW + 8 * 24 * 3600 * 1000}, "malformed"),
        ({"seq": 0}, "malformed"),
        ({"seq": -1}, "malformed"),
        ({"extra": 1}, "malformed"),
        ({"args": {"phone": "no digits"}}, "bad_args"),
        ({"args": {"phone": "8 800", "x": 1}}, "bad_args"),
        ({"args": {}}, "bad_args"),
        ({"type": "reprocess", "args": {"payment_id": "T1-1", "account": "12a"}}, "bad_args"),
        ({"type": "reprocess", "args": {"payment_id": "T1/1", "account": "1"}}, "bad_args"),
    ],
)
def test_parse_command_rejects(changes, code):
    with pytest.raises(CommandError) as err:
        parse_command(_cmd(**changes))
    assert err.value.code == code


@pytest.mark.parametrize(
    ("terminal", "now", "code"),
    [
        ("T2", NOW, "wrong_terminal"),
        ("T1", NOW + 60_000 + 300_001, "expired"),
        ("T1", NOW - 300_001, "not_yet_valid"),
    ],
)
def test_check_fresh_rejects(terminal, now, code):
    with pytest.raises(CommandError) as err:
        check_fresh(parse_command(_cmd()), terminal, now, 300_000)
    assert err.value.code == code


def test_expiry_is_strict_and_the_skew_only_covers_a_desk_clock_ahead():
    cmd = parse_command(_cmd())  # issued NOW, expires NOW + 60 s
    check_fresh(cmd, "T1", NOW + 60_000, 300_000)
    with pytest.raises(CommandError) as err:  # the TTL is the TTL: no 300 s on top
        check_fresh(cmd, "T1", NOW + 60_001, 300_000)
    assert err.value.code == "expired"
    check_fresh(cmd, "T1", NOW - 299_000, 300_000)  # issued "in the future" within skew
    with pytest.raises(CommandError) as err:
        check_fresh(cmd, "T1", NOW - 301_000, 300_000)
    assert err.value.code == "not_yet_valid"


def test_seq_must_grow_and_cannot_jump_away():
    cmd = parse_command(_cmd())  # seq 5
    check_seq(cmd, 4)
    check_seq(cmd, 0)
    for last in (5, 6):
        with pytest.raises(CommandError) as err:
            check_seq(cmd, last)
        assert err.value.code == "replayed" and err.value.extra == {"last_seq": last}
    far = parse_command(_cmd(seq=MAX_SEQ_STEP + 5))
    check_seq(far, 5)
    with pytest.raises(CommandError) as err:  # e.g. milliseconds of a clock as a sequence
        check_seq(far, 4)
    assert err.value.code == "seq_gap" and err.value.extra == {"last_seq": 4}


def _doc(**changes):  # type: ignore[no-untyped-def]
    body = {"version": 3, "terminal_id": "*", "issued_ms": NOW}
    body.update(changes)
    return body


def test_config_doc_parts():
    doc = parse_config_doc(
        _doc(
            support_phone="8 800 000-00-01",
            commissions={"mts": [{"from_minor": 0, "percent_bp": 100}]},
            help_texts={"how": {"ru": "Как", "en": "How"}},
            technician_pin_hash="scrypt$1$2$3$abc$def",
        ),
        "T1",
        DEMO_CATALOG,
    )
    assert doc.version == 3 and doc.support_phone == "8 800 000-00-01"
    assert doc.catalog is not None and doc.catalog.get("mts").commission(100_000) == 1000
    assert doc.catalog.get("beeline") == DEMO_CATALOG.get("beeline")
    assert doc.help_texts == {"how": {"ru": "Как", "en": "How"}}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"version": 0}, "malformed"),
        ({"version": "3"}, "malformed"),
        ({"terminal_id": "T2"}, "wrong_terminal"),
        ({"support_phone": "call us"}, "bad_value"),
        ({"catalog": {}}, "bad_value"),
        ({"catalog": {"providers": [{"id": "x"}]}}, "bad_value"),
        ({"commissions": {"nope": []}}, "bad_value"),
        ({"commissions": {"mts": [{"percent_bp": -5}]}}, "bad_value"),
        # a fixed 50 RUB fee would take a whole 50 RUB minimum payment (issue 15)
        ({"commissions": {"mts": [{"fixed_minor": 5000}]}}, "bad_value"),
        ({"help_texts": {"a": {"de": "x"}}}, "bad_value"),
        ({"technician_pin_hash": "1234"}, "bad_value"),
        ({"surprise": 1}, "malformed"),
    ],
)
def test_config_doc_rejects(changes, code):
    with pytest.raises(ConfigDocError) as err:
        parse_config_doc(_doc(**changes), "T1", DEMO_CATALOG)
    assert err.value.code == code


def test_keys_and_their_folder_are_fsynced(tmp_path, synced):
    """A power cut right after `kiosk keys` must not leave a folder without the key
    (the terminal would make a new, unknown one): the directory entry is fsynced."""
    from sync.keys import create_terminal_keys

    folder = tmp_path / "new" / "keys"
    create_terminal_keys(folder, "T0009")
    dirs = {path for is_dir, path in synced if is_dir}
    assert str(folder) in dirs and str(folder.parent) in dirs
    files = {path for is_dir, path in synced if not is_dir}
    assert {str(folder / n) for n in ("terminal.ed25519.key", "tls.key")} <= files


def test_watch_shows_an_unclaimed_credit_with_its_amount_and_the_way_out():
    from sync.desk import describe

    rec = {"seq": 7, "ref": "T1-00000003", "data": {
        "kind": "unclaimed", "status": "unclaimed", "inserted_minor": 50_000,
        "credited_minor": 0, "currency": "RUB", "provider_id": None, "account": None}}
    line = describe("T1", "payment", rec)
    assert "500.00 RUB" in line and "None" not in line and " 0.00 RUB" not in line
    assert "reprocess_unclaimed --arg record_id=T1-00000003" in line
    claimed = {**rec, "data": {**rec["data"], "status": "reprocessed",
                               "claimed_by": "T1-00000009", "reprocess_count": 1}}
    assert "re-processed as T1-00000009" in describe("T1", "payment", claimed)
    conflict = describe("T1", "conflict", {"kind": "payment", "ref": "T1-00000001", "seq": 1,
                                           "reprocess_count": 0})
    assert conflict.startswith("T1 CONFLICT payment T1-00000001")
