"""Provider catalogue: categories, a page of at most six providers, and search by name.

No scrolling (kiosk guidance: about seven choices a screen, no scroll): long categories
are paged. Search has its own on-screen keyboard, Cyrillic or Latin, and matches both the
Russian and the English name, so "мтс" and "mts" find the same provider.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout

from ui import theme
from ui.i18n import provider_name
from ui.screens.base import BaseScreen
from ui.theme import mm
from ui.widgets import Btn, LetterKeyboard, Panel, Text, fixed, hbox, shown, spacer, vbox

PAGE = 6  # providers per page: 2 columns × 3 rows
RESULTS = 4  # search results shown: 2 × 2
COL_W = 80.0  # the category column, mm
# The search view is the tallest screen (query, two rows of hits, four rows of keys): its
# sizes decide theme.DESIGN_H, so they are kept just above the 20 mm design minimum.
SEARCH_KEY_H = 20.5


def _norm(text: str) -> str:
    return text.lower().replace("ё", "е")


def matches(provider: dict[str, Any], query: str) -> bool:
    q = _norm(query).strip()
    if not q:
        return False
    names = (provider.get("name_ru", ""), provider.get("name_en", ""), provider.get("id", ""))
    return any(q in _norm(str(n)) for n in names)


class ProviderScreen(BaseScreen):
    NAME = "provider"

    def build(self) -> None:
        self.category = "all"
        self.page = 0
        self.searching = False
        self.query = ""
        self.head = self.title("provider.title", h_mm=16)
        # -- the list ----------------------------------------------------------------
        self.cats = BoxLayout(orientation="vertical", spacing=mm(theme.GAP),
                              size_hint_x=None, width=mm(COL_W))
        self.cat_buttons: list[Btn] = []
        self.grid = GridLayout(cols=2, rows=3, spacing=mm(theme.GAP))
        self.slots = [Btn(ident=f"provider.slot{i}", style="primary") for i in range(PAGE)]
        for b in self.slots:
            self.grid.add_widget(b)
        self.prev = self.button("provider.prev", lambda: self._turn(-1), "secondary", w_mm=60)
        self.next = self.button("provider.next", lambda: self._turn(1), "secondary", w_mm=45)
        self.page_no = Text(ident="provider.page", font_mm=theme.F_BODY)
        pager = hbox(self.prev, self.page_no, self.next, size_hint_y=None,
                     height=mm(theme.BUTTON_H))
        self.list_view = hbox(self.cats, vbox(self.grid, pager), spacing_mm=6)
        self.search_view: BoxLayout | None = None  # built on first use (44 keys)
        # -- bottom ------------------------------------------------------------------
        self.back = self.button("provider.back", self._back, "secondary", w_mm=55)
        self.search = self.button("provider.search", self._toggle_search, "secondary",
                                  w_mm=70)
        bottom = hbox(self.back, spacer(), self.search, size_hint_y=None,
                      height=mm(theme.BUTTON_H))
        self.body = BoxLayout()
        self.body.add_widget(self.list_view)
        page = vbox(self.head, self.body, bottom, spacing_mm=4)
        page.padding = (mm(6), mm(4), mm(6), mm(4))  # the search view needs the height
        self.add_widget(page)

    def entered(self) -> None:
        self.category, self.page, self.query = "all", 0, ""
        if self.searching:
            self._toggle_search()

    def _build_search(self) -> BoxLayout:
        self.field = Text(ident="provider.query", font_mm=theme.F_TITLE, bold=True,
                          halign="left")
        field = Panel(bg=theme.FIELD_BG, line=theme.FIELD_LINE, radius_mm=2,
                      size_hint_y=None, height=mm(15), padding=(mm(4), 0))
        field.add_widget(self.field)
        results = GridLayout(cols=2, spacing=mm(theme.GAP), size_hint_y=None,
                             height=2 * mm(theme.KEY_H) + mm(theme.GAP))
        self.hits = [Btn(ident=f"provider.hit{i}", style="primary") for i in range(RESULTS)]
        for b in self.hits:
            results.add_widget(b)
        # 11 keys a row: as wide as the screen allows, never under the 20 mm rule
        room_mm = self.width / mm(1) - 2 * 6 - 10 * 2 - 4
        key_w = max(theme.TOUCH_MIN + 0.5, min(27.0, room_mm / 11))
        self.keyboard = LetterKeyboard(self._key, key_w_mm=key_w, key_h_mm=SEARCH_KEY_H,
                                       labels=lambda k: self.ctl.t(k),
                                       layout=self.ctl.lang, caption_lang=self.ctl.lang)
        # the query and hits at the top, the keyboard at the bottom (within reach)
        return vbox(field, results, spacer(), self.keyboard, spacing_mm=2)

    # -- actions -----------------------------------------------------------------------
    def _back(self) -> None:
        self.ctl.intent("back")

    def _turn(self, step: int) -> None:
        self.page += step
        self.update()

    def _pick_category(self, cat: str) -> None:
        self.category, self.page = cat, 0
        self.update()

    def _toggle_search(self) -> None:
        self.searching = not self.searching
        self.body.clear_widgets()
        if self.searching:
            if self.search_view is None:
                self.search_view = self._build_search()
            self.query = ""
            self.keyboard.layout = self.ctl.lang
        self.body.add_widget(self.search_view if self.searching else self.list_view)
        self.update()

    def _key(self, key: str) -> None:
        if key == "layout":
            self.keyboard.layout = "en" if self.keyboard.layout == "ru" else "ru"
        elif key == "space":
            self.query = (self.query + " ")[:24]
        elif key == "back":
            self.query = self.query[:-1]
        elif key == "clear":
            self.query = ""
        else:
            self.query = (self.query + key)[:24]
        self.ctl.activity()
        self.update()

    def _select(self, provider_id: str) -> None:
        self.ctl.intent("select_provider", provider_id=provider_id)

    # -- view --------------------------------------------------------------------------
    def _providers(self) -> list[dict[str, Any]]:
        return list((self.ctl.catalog or {}).get("providers", []))

    def _fill(self, buttons: list[Btn], providers: list[dict[str, Any]]) -> None:
        for btn, p in zip(buttons, providers + [None] * len(buttons)):
            if p is None:
                btn.text, btn.action = "", None
                shown(btn, False)
                continue
            btn.text = provider_name(p, self.ctl.lang)
            btn.action = lambda pid=p["id"]: self._select(pid)
            shown(btn, True)

    def update(self) -> None:
        t = self.ctl.t
        self.head.text = t("search_title" if self.searching else "provider_title")
        self.back.text = t("back")
        self.search.text = t("search_close" if self.searching else "search")
        catalog = self.ctl.catalog
        if self.searching:
            self._update_search()
            return
        self._update_categories(catalog)
        providers = [p for p in self._providers()
                     if self.category == "all" or p.get("category") == self.category]
        pages = max(1, -(-len(providers) // PAGE))
        self.page = min(max(self.page, 0), pages - 1)
        self._fill(self.slots, providers[self.page * PAGE:(self.page + 1) * PAGE])
        if catalog is None:
            self.page_no.text = t("loading")
        else:
            self.page_no.text = t("page_of", n=self.page + 1, total=pages)
        self.prev.text, self.next.text = t("page_prev"), t("page_next")
        shown(self.prev, self.page > 0)
        shown(self.next, self.page < pages - 1)
        shown(self.page_no, pages > 1 or catalog is None)

    def _update_categories(self, catalog: dict[str, Any] | None) -> None:
        t = self.ctl.t
        cats = [("all", t("cat_all"))] + [
            (c["id"], c.get(f"name_{self.ctl.lang}") or c["name_ru"])
            for c in (catalog or {}).get("categories", [])
        ]
        if [b.ident for b in self.cat_buttons] != [f"provider.cat.{c}" for c, _ in cats]:
            self.cats.clear_widgets()
            self.cat_buttons = [
                fixed(Btn(ident=f"provider.cat.{cid}", style="tab",
                          action=partial(self._pick_category, cid)), h_mm=theme.BUTTON_H)
                for cid, _ in cats
            ]
            for b in self.cat_buttons:
                self.cats.add_widget(b)
            self.cats.add_widget(spacer())
        for btn, (cid, name) in zip(self.cat_buttons, cats):
            btn.text = name
            btn.style = "tab_on" if cid == self.category else "tab"

    def _update_search(self) -> None:
        t = self.ctl.t
        hits = [p for p in self._providers() if matches(p, self.query)][:RESULTS]
        if self.query:
            self.field.text = self.query
            self.field.color = theme.INK
        else:
            self.field.text = t("search_hint")
            self.field.color = theme.INK_SOFT
        self._fill(self.hits, hits)
        if self.query and not hits:
            first = self.hits[0]
            first.text, first.action = t("search_none"), None
            first.disabled, first.opacity = True, 1
        self.keyboard.caption_lang = self.ctl.lang  # key captions follow the language
