"""Looking at the live widget tree: what is visible, which text is clipped, which target is
small, which widgets overlap.

Used by the UI tests (every screen, every panel size, both languages), by `--report` (the
texts a separate process shows) and usable from a debugger on a terminal. Pure reads:
nothing is changed. The checks walk whatever widgets exist, so a widget added to a screen
is checked without the tests naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.label import Label
from kivy.uix.layout import Layout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

TOLERANCE_PX = 1.0


def walk_visible(widget: Widget, in_scroll: bool = False) -> Iterator[tuple[Widget, bool]]:
    """Every widget drawn on screen (opacity > 0 all the way up), with 'inside a scroller'."""
    if widget.opacity <= 0:
        return
    yield widget, in_scroll
    inner = in_scroll or isinstance(widget, ScrollView)
    for child in reversed(widget.children):
        yield from walk_visible(child, inner)


def window_rect(w: Widget) -> tuple[float, float, float, float]:
    x0, y0 = w.to_window(w.x, w.y)
    return x0, y0, x0 + w.width, y0 + w.height


def texts(root: Widget) -> dict[str, str]:
    """ident → text of every visible identified label (what a person would read)."""
    out: dict[str, str] = {}
    for w, _ in walk_visible(root):
        ident = getattr(w, "ident", "")
        if ident and isinstance(w, Label):
            out[ident] = w.text
    return out


def find(root: Widget, ident: str) -> Widget | None:
    for w, _ in walk_visible(root):
        if getattr(w, "ident", "") == ident:
            return w
    return None


def _inside(w: Widget, region: Widget) -> bool:
    p = w.parent
    while p is not None and p is not p.parent:
        if p is region:
            return True
        p = p.parent
    return False


def clipped(root: Widget, bounds: tuple[float, float, float, float],
            regions: tuple[Widget, ...] = ()) -> list[str]:
    """Labels whose text does not fit their box, or whose box leaves `bounds` (window px)
    or the region (e.g. the content area between header and footer) that holds it."""
    problems = []
    for w, in_scroll in walk_visible(root):
        if not isinstance(w, Label) or not w.text.strip():
            continue
        w.texture_update()
        tw, th = w.texture_size
        name = getattr(w, "ident", "") or w.text[:30]
        if tw > w.width + TOLERANCE_PX or th > w.height + TOLERANCE_PX:
            problems.append(f"{name!r}: text {tw:.0f}×{th:.0f} px in a {w.width:.0f}×"
                            f"{w.height:.0f} px box ({w.text[:60]!r})")
        if in_scroll:
            continue  # a scroller shows part of its content by design
        bx0, by0, bx1, by1 = bounds
        for region in regions:
            if _inside(w, region):
                rx0, ry0, rx1, ry1 = window_rect(region)
                bx0, by0, bx1, by1 = max(bx0, rx0), max(by0, ry0), min(bx1, rx1), min(by1, ry1)
        x0, y0, x1, y1 = window_rect(w)
        if (x0 < bx0 - TOLERANCE_PX or y0 < by0 - TOLERANCE_PX
                or x1 > bx1 + TOLERANCE_PX or y1 > by1 + TOLERANCE_PX):
            problems.append(f"{name!r}: box {x0:.0f},{y0:.0f}–{x1:.0f},{y1:.0f} leaves "
                            f"{bx0:.0f},{by0:.0f}–{bx1:.0f},{by1:.0f}")
    return problems


def small_targets(root: Widget, min_px: float) -> list[str]:
    """Enabled buttons (and other touch targets) smaller than `min_px` either way."""
    out = []
    for w, _ in walk_visible(root):
        if _is_target(w) and (w.width < min_px - TOLERANCE_PX or w.height < min_px - TOLERANCE_PX):
            name = getattr(w, "ident", "") or getattr(w, "text", "")[:20]
            out.append(f"{name!r}: {w.width:.0f}×{w.height:.0f} px < {min_px:.0f} px")
    return out


Rect = tuple[float, float, float, float]


def _is_target(w: Widget) -> bool:
    return isinstance(w, ButtonBehavior) or getattr(w, "ident", "") == "tech.corner"


def _draws_nothing(w: Widget) -> bool:
    """The hidden technician corner lies over a header cell on purpose and shows nothing."""
    return getattr(w, "ident", "") == "tech.corner"


def _intersect(a: Rect, b: Rect) -> Rect | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x1 - x0 <= TOLERANCE_PX or y1 - y0 <= TOLERANCE_PX:
        return None
    return x0, y0, x1, y1


def _scroller(w: Widget) -> Widget | None:
    p = w.parent
    while p is not None and p is not p.parent:
        if isinstance(p, ScrollView):
            return p
        p = p.parent
    return None


def overlaps(root: Widget) -> list[str]:
    """Pairs of visible texts or touch targets whose boxes overlap (neither inside the
    other). Inside a scroller a box counts only where the scroller shows it; what a modal
    backdrop (a widget with `covers_below = True`, e.g. widgets.Backdrop) covers is out
    of play: nobody can see or touch it."""
    drawn: list[tuple[Widget, Rect]] = []  # in paint order: the walk is parent first
    for w, in_scroll in walk_visible(root):
        if getattr(w, "covers_below", False):
            cover = window_rect(w)
            drawn = [(o, r) for o, r in drawn if _intersect(r, cover) is None]
            continue
        is_text = isinstance(w, Label) and bool(w.text.strip())
        if not (is_text or _is_target(w)) or _draws_nothing(w):
            continue
        rect: Rect | None = window_rect(w)
        scroller = _scroller(w) if in_scroll else None
        if scroller is not None and rect is not None:
            rect = _intersect(rect, window_rect(scroller))
        if rect is not None:
            drawn.append((w, rect))
    problems = []
    for i, (a, ra) in enumerate(drawn):
        for b, rb in drawn[i + 1:]:
            if _inside(a, b) or _inside(b, a):
                continue
            both = _intersect(ra, rb)
            if both is not None:
                problems.append(f"{describe(a)} and {describe(b)} overlap by "
                                f"{both[2] - both[0]:.0f}×{both[3] - both[1]:.0f} px")
    return problems


def overflows(root: Widget) -> list[str]:
    """Visible widgets that a layout placed (partly) outside itself: a box whose children
    need more room than it has pushes them over its neighbours' space, even where no
    text happens to overlap yet."""
    problems = []
    for w, in_scroll in walk_visible(root):
        p = w.parent
        if in_scroll or not isinstance(p, Layout) or isinstance(w, ScrollView):
            continue
        if w.width <= 0 or w.height <= 0:
            continue
        x0, y0, x1, y1 = window_rect(w)
        px0, py0, px1, py1 = window_rect(p)
        over = max(px0 - x0, py0 - y0, x1 - px1, y1 - py1)
        if over > TOLERANCE_PX:
            problems.append(f"{describe(w)} sticks out of its {type(p).__name__} by "
                            f"{over:.0f} px")
    return problems


def outside(root: Widget, bounds: Rect) -> list[str]:
    """Visible touch targets (texts are in `clipped`) reaching outside the window."""
    problems = []
    for w, in_scroll in walk_visible(root):
        if in_scroll or not _is_target(w):
            continue
        x0, y0, x1, y1 = window_rect(w)
        if (x0 < bounds[0] - TOLERANCE_PX or y0 < bounds[1] - TOLERANCE_PX
                or x1 > bounds[2] + TOLERANCE_PX or y1 > bounds[3] + TOLERANCE_PX):
            problems.append(f"{describe(w)}: box {x0:.0f},{y0:.0f}–{x1:.0f},{y1:.0f} "
                            f"leaves the window")
    return problems


def describe(w: Any) -> str:
    return f"{type(w).__name__}({getattr(w, 'ident', '')!r}, {getattr(w, 'text', '')[:30]!r})"
