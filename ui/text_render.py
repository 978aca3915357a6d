"""Text drawn once, not twice: core labels that let go of their pixels after the upload.

Kivy's SDL2 text provider draws a label into an SDL surface, copies the pixels into the
texture, and keeps the surface until the label is drawn again. Every label on screen so
holds its text twice, once in the texture and once in the surface, which on a
software-GL panel (where the texture is ordinary memory too) was about 2.5 MiB of the
UI's resident size. These subclasses drop the surface as soon as its pixels are taken;
a later redraw (new text, new size, a GL context reload) makes a fresh one.
"""

from __future__ import annotations

from typing import Any

from kivy.core.text import Label as CoreLabel
from kivy.core.text.markup import MarkupLabel

SURFACE = "_surface"  # where the SDL2 provider keeps the drawn text between renders


class _DropsSurface:
    """Mixin for a core label class: forget the drawn surface once its data is taken."""

    def _render_end(self) -> Any:
        data = super()._render_end()  # type: ignore[misc]
        vars(self).pop(SURFACE, None)
        return data


class LeanLabel(_DropsSurface, CoreLabel):
    """Plain text."""


class LeanMarkupLabel(_DropsSurface, MarkupLabel):
    """Text with markup (offer cards on the receipt screen)."""
