"""The help center: topics, top questions, search on the on-screen keyboard, an article
with the support phone under it, and "this did not help".

UI-local over the core's idle screen. The articles come from the core (local API
`help_center`: the desk's, or those shipped with the terminal); search is
ui/help_search.py. Every visit is counted for the desk through the core (`help_event`:
opened, article viewed, search without result, did not help; docs/self-service.md).
Long articles scroll here (the one place a customer may scroll): the desk writes them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView

from ui import (
    help_strings,  # noqa: F401  (registers the help texts)
    theme,
)
from ui.help_search import index, search
from ui.i18n import pick
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Btn, LetterKeyboard, Panel, Text, fixed, hbox, shown, spacer, vbox

RESULTS = 4  # search hits shown: 2 × 2, as in the provider search
ITEM_H = 20.0  # a list item: the touch minimum
SEARCH_KEY_H = 20.5
MAX_QUERY = 30


def _scroll(box: BoxLayout) -> ScrollView:
    box.bind(minimum_height=box.setter("height"))
    view = ScrollView(do_scroll_x=False, bar_width=mm(4), scroll_type=["bars", "content"])
    view.add_widget(box)
    return view


class HelpScreen(BaseScreen):
    NAME = "help"

    def build(self) -> None:
        self.mode = "home"  # home | category | article | search
        self.category: str | None = None
        self.article_id: str | None = None
        self.came_from = "home"
        self.query = ""
        self.hit_ids: list[str] = []
        self.not_helped: set[str] = set()
        self._built_for: tuple[Any, ...] = ()
        self._index: list[Any] = []
        self.head = self.title("help.title", h_mm=15)
        self.body = BoxLayout()
        self.back = self.button("help.back", self._back, "secondary", w_mm=55)
        self.search_btn = self.button("help.search", self._toggle_search, "secondary",
                                      w_mm=70)
        bottom = hbox(self.back, spacer(), self.search_btn, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        page = vbox(self.head, self.body, bottom, spacing_mm=4)
        page.padding = (mm(6), mm(4), mm(6), mm(4))
        self.add_widget(page)
        # -- home: topics and top questions ------------------------------------------
        self.cats = vbox(spacing_mm=theme.GAP, size_hint_y=None)
        self.top_list = vbox(spacing_mm=theme.GAP, size_hint_y=None)
        self.top_list.bind(minimum_height=self.top_list.setter("height"))
        self.cats_head = fixed(Text(ident="help.topics", font_mm=theme.F_LARGE, bold=True),
                               h_mm=10)
        self.top_head = fixed(Text(ident="help.top", font_mm=theme.F_LARGE, bold=True),
                              h_mm=10)
        # the desk's older `help_texts` (snapshot) follow the top questions
        self.notes = vbox(spacing_mm=3, size_hint_y=None)
        self.notes.bind(minimum_height=self.notes.setter("height"))
        right = vbox(self.top_list, self.notes, spacing_mm=4, size_hint_y=None)
        self.call = fixed(Text(ident="help.call", font_mm=theme.F_LARGE, bold=True,
                               color=theme.PRIMARY), h_mm=12)
        self.home_view = vbox(hbox(
            vbox(self.cats_head, _scroll(self.cats), size_hint_x=0.38),
            vbox(self.top_head, _scroll(right)), spacing_mm=6), self.call, spacing_mm=3)
        self._notes_shown: tuple[str, ...] = ()
        # -- a topic's articles ---------------------------------------------------------
        self.list = vbox(spacing_mm=theme.GAP, size_hint_y=None)
        self.list_view = _scroll(self.list)
        # -- an article ---------------------------------------------------------------
        self.art_body = Text(ident="help.article.body", flow=True, font_mm=theme.F_LARGE,
                             halign="left")
        self.art_phone = Text(ident="help.article.phone", flow=True, font_mm=theme.F_LARGE,
                              bold=True, color=theme.PRIMARY, halign="left")
        self.art_code = Text(ident="help.article.code", flow=True, font_mm=theme.F_BODY,
                             halign="left")
        text_box = vbox(self.art_body, self.art_phone, self.art_code, spacing_mm=4,
                        size_hint_y=None)
        self.not_helped_btn = self.button("help.not_helped", self._not_helped, "secondary",
                                          w_mm=110)
        self.art_note = Text(ident="help.article.note", font_mm=theme.F_BODY)
        self.article_view = vbox(_scroll(text_box),
                                 hbox(self.not_helped_btn, self.art_note,
                                      size_hint_y=None, height=mm(theme.BUTTON_H)),
                                 spacing_mm=3)
        self.search_view: BoxLayout | None = None  # built on first use (44 keys)
        self.body.add_widget(self.home_view)

    def _build_search(self) -> BoxLayout:
        self.field = Text(ident="help.query", font_mm=theme.F_TITLE, bold=True, halign="left")
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint_y=None, height=mm(15), padding=(mm(4), 0))
        field.add_widget(self.field)
        results = GridLayout(cols=2, spacing=mm(theme.GAP), size_hint_y=None,
                             height=2 * mm(theme.KEY_H) + mm(theme.GAP))
        self.hits = [Btn(ident=f"help.hit{i}", style="primary", font_mm=theme.F_BODY,
                         action=partial(self._open_hit, i)) for i in range(RESULTS)]
        for b in self.hits:
            results.add_widget(b)
        room_mm = self.width / mm(1) - 2 * 6 - 10 * 2 - 4
        key_w = max(theme.TOUCH_MIN + 0.5, min(27.0, room_mm / 11))
        self.keyboard = LetterKeyboard(self._key, key_w_mm=key_w, key_h_mm=SEARCH_KEY_H,
                                       labels=lambda k: self.ctl.t(k),
                                       layout=self.ctl.lang, caption_lang=self.ctl.lang)
        return vbox(field, results, spacer(), self.keyboard, spacing_mm=2)

    # -- the visit ---------------------------------------------------------------------
    def entered(self) -> None:
        self.mode, self.query, self.not_helped = "home", "", set()
        self._show(self.home_view)
        self.ctl.help_event("help_opened", via="menu")

    @property
    def help_doc(self) -> dict[str, Any]:
        return getattr(self.ctl, "help_center", None) or {}

    def _article(self, art_id: str | None) -> dict[str, Any] | None:
        return next((a for a in self.help_doc.get("articles", []) if a.get("id") == art_id),
                    None)

    def _show(self, view: BoxLayout) -> None:
        self.body.clear_widgets()
        self.body.add_widget(view)

    # -- actions -------------------------------------------------------------------------
    def _back(self) -> None:
        if self.mode == "search":
            self._toggle_search()
        elif self.mode == "article":
            self.mode = self.came_from  # back to the list or the search it came from
            self._show({"home": self.home_view, "category": self.list_view,
                        "search": self.search_view or self.home_view}[self.mode])
            self.update()
        elif self.mode == "category":
            self.mode = "home"
            self._show(self.home_view)
            self.update()
        else:
            self.ctl.close_local()

    def _toggle_search(self) -> None:
        if self.mode == "search":
            if self.query.strip() and not self.hit_ids:
                self.ctl.help_event("help_search_empty")  # left with nothing found
            self.mode = "home"
            self._show(self.home_view)
        else:
            if self.search_view is None:
                self.search_view = self._build_search()
            self.mode, self.query, self.hit_ids = "search", "", []
            self.keyboard.layout = self.ctl.lang
            self._show(self.search_view)
        self.update()

    def _key(self, key: str) -> None:
        if key == "layout":
            self.keyboard.layout = "en" if self.keyboard.layout == "ru" else "ru"
        elif key == "space":
            self.query = (self.query + " ")[:MAX_QUERY]
        elif key == "back":
            self.query = self.query[:-1]
        elif key == "clear":
            self.query = ""
        else:
            self.query = (self.query + key)[:MAX_QUERY]
        self.update()

    def _open_category(self, cat: str) -> None:
        self.mode, self.category = "category", cat
        self._show(self.list_view)
        self.update()

    def _open_hit(self, i: int) -> None:
        if i < len(self.hit_ids):
            self.open_article(self.hit_ids[i])

    def open_article(self, art_id: str) -> None:
        self.came_from = self.mode if self.mode != "article" else self.came_from
        self.mode, self.article_id = "article", art_id
        self._show(self.article_view)
        self.ctl.help_event("help_article_viewed", article_id=art_id)
        self.update()

    def _not_helped(self) -> None:
        if self.article_id is not None and self.article_id not in self.not_helped:
            self.not_helped.add(self.article_id)
            self.ctl.help_event("help_not_helped", article_id=self.article_id)
        self.update()

    # -- drawing -----------------------------------------------------------------------
    def _item(self, ident: str, text: str, action: Any, style: str = "primary") -> Btn:
        return fixed(Btn(ident=ident, text=text, style=style, font_mm=theme.F_BUTTON,
                         action=action), h_mm=ITEM_H)

    def _rebuild_lists(self) -> None:
        key = (id(self.help_doc), self.ctl.lang, self.category)
        if key == self._built_for:
            return
        self._built_for = key
        lang = self.ctl.lang
        self._index = index(self.help_doc.get("articles", []))
        self.cats.clear_widgets()
        for i, c in enumerate(self.help_doc.get("categories", [])):
            self.cats.add_widget(self._item(f"help.cat{i}", pick(c.get("title"), lang),
                                            lambda c=c["id"]: self._open_category(c),
                                            "secondary"))
        self.top_list.clear_widgets()
        for i, art_id in enumerate(self.help_doc.get("top", [])):
            art = self._article(art_id)
            if art is not None:
                self.top_list.add_widget(self._item(f"help.top{i}", pick(art.get("title"), lang),
                                               lambda a=art_id: self.open_article(a)))
        self.list.clear_widgets()
        arts = [a for a in self.help_doc.get("articles", []) if a.get("category") == self.category]
        for i, art in enumerate(arts):
            self.list.add_widget(self._item(f"help.item{i}", pick(art.get("title"), lang),
                                            lambda a=art["id"]: self.open_article(a)))

    def update(self) -> None:
        ctl, t = self.ctl, self.ctl.t
        self._rebuild_lists()
        titles = {"home": t("help_title"), "search": t("help_search_title")}
        art = self._article(self.article_id)
        if self.mode == "category":
            cat: dict[str, Any] = next((c for c in self.help_doc.get("categories", [])
                        if c.get("id") == self.category), {})
            self.head.text = pick(cat.get("title"), ctl.lang)
        elif self.mode == "article" and art is not None:
            self.head.text = pick(art.get("title"), ctl.lang)
            self.art_body.text = pick(art.get("body"), ctl.lang)
            # every article ends with the support phone of the desk's config
            self.art_phone.text = t("help_phone_line", phone=ctl.phone)
            code = (ctl.snap or {}).get("help_code")  # for the operator, if they call
            self.art_code.text = t("help_code", code=code) if code else ""
            done = self.article_id in self.not_helped
            shown(self.not_helped_btn, not done)
            self.art_note.text = t("help_not_helped_done", phone=ctl.phone) if done else ""
            self.not_helped_btn.text = t("help_not_helped")
        else:
            self.head.text = titles.get(self.mode, t("help_title"))
        notes = tuple(ctl.core_text(v) for v in ((ctl.snap or {}).get("help_texts") or {}
                                                  ).values() if isinstance(v, dict))
        if notes != self._notes_shown:
            self._notes_shown = notes
            self.notes.clear_widgets()
            for i, text in enumerate(notes):
                self.notes.add_widget(Text(ident=f"help.text{i}", text=text, flow=True,
                                           font_mm=theme.F_BODY, halign="left"))
        self.call.text = t("help_call", phone=ctl.phone)
        self.cats_head.text = t("help_categories")
        self.top_head.text = t("help_top")
        self.back.text = t("back")
        self.search_btn.text = t("help_search_close" if self.mode == "search"
                                 else "help_search")
        if self.mode == "search" and self.search_view is not None:
            self.field.text = self.query or t("help_search_hint")
            self.hit_ids = search(self._index, self.query, RESULTS)
            for i, b in enumerate(self.hits):
                if i < len(self.hit_ids):
                    a = self._article(self.hit_ids[i]) or {}
                    b.text, b.style = pick(a.get("title"), ctl.lang), "primary"
                    shown(b, True)
                elif i == 0 and self.query.strip():
                    b.text, b.style = t("help_search_none"), "secondary"
                    shown(b, True)
                    b.disabled = True
                else:
                    shown(b, False)
            self.keyboard.caption_lang = ctl.lang
