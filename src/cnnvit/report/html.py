"""report.html: one self-contained file (images embedded as data URIs, styles inline, no
request to the network), rendered by Jinja2 with autoescaping on, so every string from the
run's files is text, never markup."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from cnnvit.document import Block, Bullets, Figure, Para, Section, Table
from cnnvit.report.content import Document

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> Markup:
    """Escape `text`, then turn the document's `**bold**` and `code` marks into tags."""
    safe = str(escape(text))
    safe = _BOLD.sub(r"<strong>\1</strong>", safe)
    return Markup(_CODE.sub(r"<code>\1</code>", safe))


def data_uri(path: Path) -> str:
    """The PNG file at `path` as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _block(b: Block) -> dict[str, Any]:
    if isinstance(b, Para):
        return {"kind": "para", "text": b.text}
    if isinstance(b, Bullets):
        return {"kind": "bullets", "entries": b.items}
    if isinstance(b, Table):
        return {"kind": "table", "header": b.header, "rows": b.rows,
                "text_columns": b.text_columns}
    assert isinstance(b, Figure)
    return {"kind": "figure", "src": data_uri(b.path), "caption": b.caption}


def _section(s: Section) -> dict[str, Any]:
    return {"title": s.title, "blocks": [_block(b) for b in s.blocks],
            "subsections": [_section(sub) for sub in s.subsections]}


def render(doc: Document) -> str:
    """The HTML text of the report."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("cnnvit.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["inline"] = inline
    template = env.get_template("report.html.j2")
    context = {"title": doc.title, "intro": [_block(b) for b in doc.intro],
               "sections": [_section(s) for s in doc.sections]}
    return template.render(doc=context)
