"""Help search (ui/help_search.py): typos, word forms, ё/е, case, both languages; and the
stuck-customer detector (ui/help_detector.py), table-tested."""

from __future__ import annotations

import pytest

from kiosk.help_center import default_help_center
from ui.help_detector import StuckDetector, Thresholds
from ui.help_search import edit_distance, index, normalise, search, stem, word_match

INDEX = index(default_help_center().to_dict()["articles"])


@pytest.mark.parametrize(("query", "first"), [
    ("чек", "no_receipt"),
    ("нет чека", "no_receipt"),            # word form + a stop word
    ("ЧЕКА", "no_receipt"),                # case
    ("квитанцыя", "no_receipt"),           # a typo
    ("не тот номер", "wrong_number"),
    ("оплотил не на тот номер", "wrong_number"),
    ("ошибся номером", "wrong_number"),
    ("деньги не пришли", "not_credited"),
    ("денги не зачислены", "not_credited"),  # a missing letter
    ("зачислено", "not_credited"),          # another form
    ("купюру не берет", "bill_rejected"),   # е for ё
    ("купюра застряла", "money_inside"),
    ("receit", "no_receipt"),
    ("wrong numbr", "wrong_number"),
    ("money inside", "money_inside"),
    ("квита", "no_receipt"),                # an unfinished word
])
def test_search_finds_the_story(query: str, first: str) -> None:
    assert search(INDEX, query)[:1] == [first]


@pytest.mark.parametrize("query", ["", "   ", "zzz", "на не и", "qwertyuiop"])
def test_search_finds_nothing(query: str) -> None:
    assert search(INDEX, query) == []


@pytest.mark.parametrize(("word", "expected"), [
    ("чека", "чек"), ("чеку", "чек"), ("деньги", "деньг"), ("купюры", "купюр"),
    ("receipts", "receipt"), ("ёлка", "елк"), ("он", "он"),
])
def test_stem(word: str, expected: str) -> None:
    assert stem(normalise(word)) == expected


@pytest.mark.parametrize(("a", "b", "limit", "d"), [
    ("чек", "чек", 1, 0), ("квитанция", "квитанцыя", 2, 1), ("номер", "нмоер", 1, 1),
    ("abc", "xyz", 1, 2), ("a", "abcdef", 2, 3),
])
def test_edit_distance(a: str, b: str, limit: int, d: int) -> None:
    assert edit_distance(a, b, limit) == d


def test_short_words_allow_one_typo_only() -> None:
    assert word_match("чак", "чек") > 0
    assert word_match("шак", "чек") == 0


# -- the detector ---------------------------------------------------------------------
def _snap(screen: str, inserted: int = 0, rejected: int = 0) -> dict:
    return {"screen": screen, "session": {"inserted_minor": inserted,
                                          "rejected_bills": rejected}}


def test_invalid_accounts_fire_once_at_the_threshold() -> None:
    d = StuckDetector(Thresholds(invalid_account=3))
    d.observe_snapshot(_snap("account"), 0)
    assert [d.observe_refusal("invalid_account") for _ in range(4)] == [
        None, None, "invalid_account", None]
    assert d.observe_refusal("wrong_screen") is None


def test_back_and_forth() -> None:
    d = StuckDetector(Thresholds(back_and_forth=2))
    fired = [d.observe_snapshot(_snap(s), i) for i, s in enumerate(
        ["provider", "account", "provider", "account", "confirm", "account"])]
    assert fired == [None, None, None, None, None, "back_and_forth"]


def test_rejected_bills_from_the_core_counter() -> None:
    d = StuckDetector(Thresholds(rejected_bills=3))
    assert d.observe_snapshot(_snap("cash", rejected=2), 0) is None
    assert d.observe_snapshot(_snap("cash", rejected=3), 1) == "rejected_bills"


def test_idle_with_cash_needs_cash_and_no_touch() -> None:
    d = StuckDetector(Thresholds(idle_with_cash_s=30))
    d.observe_snapshot(_snap("cash"), 0)
    assert d.observe_time(100) is None  # no cash inside: not stuck, just thinking
    d.observe_snapshot(_snap("cash", inserted=10000), 100)
    assert d.observe_time(120) is None
    d.observe_touch(125)
    assert d.observe_time(150) is None
    assert d.observe_time(155) == "idle_with_cash"


def test_a_new_session_starts_afresh_and_disabled_never_fires() -> None:
    d = StuckDetector(Thresholds(invalid_account=1))
    d.observe_snapshot(_snap("account"), 0)
    assert d.observe_refusal("invalid_account") == "invalid_account"
    d.observe_snapshot(_snap("idle"), 1)
    d.observe_snapshot(_snap("account"), 2)
    assert d.observe_refusal("invalid_account") == "invalid_account"
    off = StuckDetector(Thresholds(enabled=False, invalid_account=1))
    off.observe_snapshot(_snap("account"), 0)
    assert off.observe_refusal("invalid_account") is None


def test_thresholds_from_the_center() -> None:
    doc = default_help_center().to_dict()
    doc["proactive"]["invalid_account"] = 7
    assert Thresholds.from_center(doc).invalid_account == 7
    assert Thresholds.from_center(None) == Thresholds()
