"""A small document model shared by summary.md and the study report.

Text may hold one inline markup, `**bold**`; everything else is literal. The Markdown form is
made here; the report renders the same blocks to HTML (escaped by Jinja2) and PDF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def md(text: object) -> str:
    """A name safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


@dataclass(frozen=True)
class Para:
    """A paragraph."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table of text cells; the first `text_columns` are text, the rest numbers (right-
    aligned)."""

    header: list[str]
    rows: list[list[str]]
    text_columns: int = 1

    def lines(self) -> list[str]:
        """The Markdown lines of the table."""
        align = ["---"] * self.text_columns + ["---:"] * (len(self.header) - self.text_columns)
        out = ["| " + " | ".join(md(h) for h in self.header) + " |", "|" + "|".join(align) + "|"]
        return out + ["| " + " | ".join(md(c) for c in r) + " |" for r in self.rows]


@dataclass(frozen=True)
class Figure:
    """An image file of the run with its caption."""

    path: Path
    caption: str


Block = Para | Bullets | Table | Figure


@dataclass
class Section:
    """A titled section: blocks, then subsections one level down."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


def markdown(title: str, intro: list[Block], sections: list[Section],
             relative_to: Path | None = None) -> str:
    """The Markdown text of a document; figure paths are written relative to `relative_to`."""
    lines = [f"# {title}", ""]
    for block in intro:
        lines += block_lines(block, relative_to) + [""]
    for section in sections:
        lines += _section_lines(section, relative_to, 2)
    return "\n".join(lines).rstrip() + "\n"


def _section_lines(section: Section, relative_to: Path | None, level: int) -> list[str]:
    lines = [f"{'#' * level} {section.title}", ""]
    for block in section.blocks:
        lines += block_lines(block, relative_to) + [""]
    for sub in section.subsections:
        lines += _section_lines(sub, relative_to, level + 1)
    return lines


def block_lines(block: Block, relative_to: Path | None = None) -> list[str]:
    """One block as Markdown lines."""
    if isinstance(block, Para):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        return block.lines()
    path = block.path if relative_to is None else Path(os.path.relpath(block.path, relative_to))
    return [f"![{block.caption}]({path.as_posix()})", "", f"*{block.caption}*"]
