"""The help center document (kiosk/help_center.py): shipped defaults, refusals naming the
key, and hypothesis throwing arbitrary JSON at the parser (only HelpCenterError escapes)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.help_center import (
    MAX_BODY,
    HelpCenter,
    HelpCenterError,
    Trigger,
    default_help_center,
    parse_help_center,
)
from sync.desk_config import ConfigDocError, parse_config_doc

STORIES = ("wrong_number", "no_receipt", "not_credited", "money_inside")


def _doc() -> dict[str, Any]:
    return default_help_center().to_dict()


def test_defaults_cover_every_complaint_story_in_both_languages() -> None:
    center = default_help_center()
    for story in STORIES:
        art = center.article(story)
        assert art is not None, story
        assert art.body.ru.strip() and art.body.en.strip()
    # the phone is never baked into an article: the screen appends the desk's number
    for art in center.articles:
        assert "8 800" not in art.body.ru and "8 800" not in art.body.en
    assert set(center.proactive.articles) == {t.value for t in Trigger}


def test_round_trip_through_the_plain_form() -> None:
    center = default_help_center()
    assert parse_help_center(json.loads(json.dumps(center.to_dict()))) == center


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("articles"), "help_center.articles: is required"),
    (lambda d: d["articles"][0].update(category="nope"), "articles[0].category: must be one of"),
    (lambda d: d["articles"][1].update(id=d["articles"][0]["id"]), "articles[1]: repeats"),
    (lambda d: d["articles"][0]["title"].pop("en"), "articles[0].title.en: is required"),
    (lambda d: d["articles"][0]["body"].update(ru="x" * (MAX_BODY + 1)),
     "articles[0].body.ru: must be a non-empty text"),
    (lambda d: d["articles"][0]["body"].update(ru="   "), "articles[0].body.ru"),
    (lambda d: d["articles"][0].update(id="Bad Id"), "articles[0].id: must be an id"),
    (lambda d: d.update(top=["ghost"]), "top[0]: names no article"),
    (lambda d: d.update(extra=1), "help_center.extra: is not a known setting"),
    (lambda d: d["proactive"].update(invalid_account=0), "proactive.invalid_account"),
    (lambda d: d["proactive"].update(idle_with_cash_s=True), "proactive.idle_with_cash_s"),
    (lambda d: d["proactive"]["articles"].update(idle_with_cash="ghost"),
     "proactive.articles.idle_with_cash"),
    (lambda d: d["proactive"]["articles"].update(nap="how_to_pay"),
     "proactive.articles.nap: is not a known setting"),
])
def test_bad_documents_are_refused_naming_the_key(mutate: Any, message: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(HelpCenterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_help_center(doc)


def test_desk_config_carries_the_section_and_refuses_a_bad_one_whole() -> None:
    from kiosk.catalog import Catalog

    empty = Catalog(providers=(), categories=())
    body = {"version": 3, "terminal_id": "*", "issued_ms": 0, "help_center": _doc()}
    doc = parse_config_doc(body, "T0001", empty)
    assert isinstance(doc.help_center, HelpCenter)
    assert doc.help_center == default_help_center()
    body["help_center"]["top"] = ["ghost"]
    with pytest.raises(ConfigDocError) as exc:
        parse_config_doc(body, "T0001", empty)
    assert exc.value.code == "bad_value" and "top[0]" in str(exc.value)
    assert parse_config_doc({"version": 4, "terminal_id": "*", "issued_ms": 0}, "T0001",
                            empty).help_center is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_fuzz_arbitrary_json_only_ever_gives_a_clear_error(value: Any) -> None:
    try:
        parse_help_center(value)
    except HelpCenterError as exc:
        assert str(exc).startswith("help_center")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_one_value_replaced_anywhere_in_a_valid_document(data: st.DataObject) -> None:
    doc = _doc()
    node: Any = doc
    path: list[Any] = []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                        else list(range(len(node)))))
        path.append(key)
        node = node[key]
    if not path:
        return
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON)
    try:
        center = parse_help_center(copy.deepcopy(doc))
    except HelpCenterError:
        return
    assert parse_help_center(center.to_dict()) == center  # whatever passes is consistent
