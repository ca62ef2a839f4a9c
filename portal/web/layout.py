"""Page layout helpers the base template applies to every page's content.

Tables scroll sideways inside their own box on a narrow screen, so no page is wider than
the phone it is read on (issue 14). Every ``<table>`` of a page's content is wrapped in a
``<div class="table-scroll">`` (``overflow-x: auto``, static/portal.css) by the
``scrolling_tables`` filter around the content block of templates/base.html, so no
template has to remember it. A box that can scroll must be reachable from the keyboard
(WCAG 2.1.1; axe's ``scrollable-region-focusable``): when the table holds nothing
focusable (a link, a button, a field), the box itself takes the focus (``tabindex="0"``).
"""

from __future__ import annotations

import re

from markupsafe import Markup

_TABLE_TAG = re.compile(r"<table\b[^>]*>|</table\s*>", re.IGNORECASE)
_FOCUSABLE = re.compile(
    r"<(a\s[^>]*href|button|input(?![^>]*type=.?hidden)|select|textarea|summary)\b|tabindex=",
    re.IGNORECASE,
)


def scrolling_tables(html: str) -> Markup:
    """``html`` with each outermost table inside a sideways-scrolling box."""
    text = str(html)
    out: list[str] = []
    depth = 0
    position = 0
    start = 0
    for tag in _TABLE_TAG.finditer(text):
        closing = tag.group(0).startswith("</")
        if not closing:
            if depth == 0:
                out.append(text[position : tag.start()])
                start = tag.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                table = text[start : tag.end()]
                focus = "" if _FOCUSABLE.search(table) else ' tabindex="0"'
                out.append(f'<div class="table-scroll"{focus}>{table}</div>')
                position = tag.end()
    if depth:  # an unclosed table: leave the rest as it was
        position = start
    out.append(text[position:])
    return Markup("".join(out))  # noqa: S704  (the rendered template, escaped already)
