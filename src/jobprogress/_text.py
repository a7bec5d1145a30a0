"""Make strings that came from workers safe to show on a terminal (RELIABILITY rows 29 and 40).

Job ids, worker ids, kinds, units, errors and payload keys and values are written by worker code we do
not control. Before any of them reaches a terminal, :func:`scrub` escapes what a terminal would act on,
or what would hide or reorder text, instead of showing it, and the views wrap the result in
:class:`rich.text.Text` (never a markup string), so rich and Textual neither parse ``[bold]`` or ``[/]``
as markup nor expand ``:warning:`` into an emoji.

Escaped, never removed: an id an older store holds with a bidi override is shown as ``scan\\u202e42``,
which a person can type back (``jobprogress show $'scan\\u202e42'``) to reach the same job.

Everything that goes to a terminal passes through :func:`scrub` (the rich views wrap it in
``cli._render.safe_text``); nothing else in ``jobprogress.cli`` turns worker data into display text.
The browser view (``server._web``) uses the same functions before Jinja's autoescape, and
:func:`scrub_block` where a block of text (an error's traceback) keeps its lines.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["scrub", "scrub_block"]

# Characters that move the cursor or end a line: a space keeps the words on either side apart (ids may
# not hold them; in an error text a line break is layout, not content).
_SPACING: Final = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")

# Cc: C0 and C1 controls (ESC starts every terminal escape sequence; BEL ends OSC sequences).
# Cf: format characters such as bidi overrides (U+202E) and zero-width joiners, which reorder or hide
#     text. Cs: surrogates, which cannot be encoded for the terminal. Co, Cn: private-use and unassigned
#     code points, which show as nothing or as a box nobody can type.
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _clean_char(char: str) -> str:
    if char in _SPACING:
        return " "
    if unicodedata.category(char) in _ESCAPED_CATEGORIES:
        return _escape(char)
    return char


def scrub(value: object) -> str:
    """Return ``value`` as text a terminal shows as it is, with every hidden character escaped.

    Control characters (C0 and C1, which include ESC and BEL and so every ANSI/OSC escape sequence),
    format characters (Unicode category Cf: bidi overrides such as U+202E, zero-width characters),
    surrogates, private-use and unassigned code points are written as Python/shell escapes (``\\x1b``,
    ``\\u202e``, ``\\U0010fffd``): visible, inert, and typeable back. Tabs, newlines, carriage returns and
    line/paragraph separators become a space, so ``"a\\rb"`` cannot overwrite its own line and shows as
    ``"a b"``.

    The result is plain text, not markup: put it in a :class:`rich.text.Text`,
    never in a string that rich or Textual will parse.

    Args:
        value: Any value; non-strings are converted with ``str()``.

    Returns:
        The scrubbed text.
    """
    text = value if isinstance(value, str) else str(value)
    # Fast path: str.isprintable() is False for every category we change, so most strings cost one C call.
    if text.isprintable():
        return text
    return "".join(_clean_char(char) for char in text)


_LINES: Final = frozenset("\n\t")


def scrub_block(value: object) -> str:
    """:func:`scrub` for a block of text shown with its layout (a traceback in ``<pre>``).

    Newlines and tabs stay (``\\r\\n`` and a lone ``\\r`` become a newline, so no line overwrites
    another); every other character :func:`scrub` changes is changed the same way.
    """
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isprintable():
        return text
    return "".join(char if char in _LINES else _clean_char(char) for char in text)
