"""The pieces of controlkit's HTML reports (eval's and quickstart's): figures, tables, numbers, the page.

Pictures are files beside the page, linked by relative paths, so a report folder can be zipped or served.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "img{image-rendering:pixelated;max-width:100%;min-width:16em}figure{display:inline-block;margin:.5em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
    "pre{background:#f4f4f4;padding:1em;overflow-x:auto}"
)


def number(value: float | None, digits: int = 3) -> str:
    """A figure as text; "n/a" for a missing or NaN one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure(path: str, caption: str) -> str:
    """An image (a link to itself) with its caption."""
    src, text = html.escape(path), html.escape(caption)
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{text}"></a><figcaption>{text}</figcaption></figure>'
    )


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def page(title: str, sections: Sequence[str]) -> str:
    """A whole HTML page: the title, the style, the sections in order."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(sections)}</body></html>"
