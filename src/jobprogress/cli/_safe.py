"""Make strings that came from workers safe to show on a terminal (RELIABILITY row 29).

Job ids, worker ids, kinds, units, errors and payload keys and values are written by worker code we do
not control. Before any of them reaches a terminal, :func:`scrub` removes what a terminal would act on
instead of showing, and the views wrap the result in :class:`rich.text.Text` (never a markup string), so
rich and Textual neither parse ``[bold]`` or ``[/]`` as markup nor expand ``:warning:`` into an emoji.

Everything that goes to a terminal passes through :func:`scrub` (the rich views wrap it in
``_render.safe_text``); nothing else in ``jobprogress.cli`` turns worker data into display text.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["scrub"]

# Characters that move the cursor or end a line: a space keeps the words on either side apart.
_SPACING: Final = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")

# Cc: C0 and C1 controls (ESC starts every terminal escape sequence; BEL ends OSC sequences).
# Cf: format characters such as bidi overrides (U+202E) and zero-width joiners, which reorder or hide
#     text. Cs: surrogates, which cannot be encoded for the terminal. Zl/Zp: line and paragraph separators.
_REMOVED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _clean_char(char: str) -> str:
    if char in _SPACING:
        return " "
    if unicodedata.category(char) in _REMOVED_CATEGORIES:
        return ""
    return char


def scrub(value: object) -> str:
    """Return ``value`` as text with every terminal-active character removed.

    Control characters (C0 and C1, which include ESC and BEL and so every ANSI/OSC escape sequence),
    format characters (Unicode category Cf: bidi overrides such as U+202E, zero-width characters),
    surrogates and line/paragraph separators are removed; tabs, newlines and carriage returns become a
    space, so ``"a\\rb"`` cannot overwrite its own line and shows as ``"a b"``. What is left of an escape
    sequence (``"[2J"``) stays visible as plain text.

    The result is plain text, not markup: put it in a :class:`rich.text.Text`,
    never in a string that rich or Textual will parse.

    Args:
        value: Any value; non-strings are converted with ``str()``.

    Returns:
        The scrubbed text.
    """
    text = value if isinstance(value, str) else str(value)
    # Fast path: str.isprintable() is False for every category we remove, so most strings cost one C call.
    if text.isprintable():
        return text
    return "".join(_clean_char(char) for char in text)
