"""report.pdf with fpdf2: the same document as report.md, with tables, the figures, page
numbers, an outline, and real text (DejaVu Sans, embedded, so it can be selected and searched).

DejaVu Sans ships with matplotlib, so no system font or package is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace
from PIL import Image

from cnnvit.document import Block, Bullets, Figure, Para, Section, Table
from cnnvit.report.content import Document

FONT = "dejavu"
BODY = 9.5          # pt
LINE = 4.8          # mm per body line
HEADINGS = {1: 17.0, 2: 14.0, 3: 11.5, 4: 10.0}
_MARKS = re.compile(r"(\*\*.+?\*\*|`[^`]+`)")
MAX_FIGURE_HEIGHT = 0.45  # share of the page's printable height


class _Pdf(FPDF):
    """A4 pages with the report title and the page number in the footer."""

    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.report_title = title
        fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        self.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font(f"{FONT}-mono", "", str(fonts / "DejaVuSansMono.ttf"))
        self.set_auto_page_break(True, margin=16)
        self.set_title(title)
        self.set_creator("cnnvit report")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 8)
        self.set_text_color(110)
        self.cell(0, 6, f"{self.report_title} — page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0)


def _rich(pdf: _Pdf, text: str) -> None:
    """Flowing text with the document's **bold** and `code` marks, then a line break."""
    for part in _MARKS.split(text):
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            pdf.set_font(FONT, "B", BODY)
            pdf.write(LINE, part[2:-2])
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            pdf.set_font(f"{FONT}-mono", "", BODY - 0.5)
            pdf.write(LINE, part[1:-1])
        elif part:
            pdf.set_font(FONT, "", BODY)
            pdf.write(LINE, part)
    pdf.set_font(FONT, "", BODY)
    pdf.ln(LINE)


def _bullets(pdf: _Pdf, items: list[str]) -> None:
    left = pdf.l_margin
    for item in items:
        pdf.set_x(left + 2)
        pdf.set_font(FONT, "", BODY)
        pdf.write(LINE, "•")
        pdf.set_left_margin(left + 6)
        pdf.set_x(left + 6)
        _rich(pdf, item)
        pdf.set_left_margin(left)
        pdf.ln(0.8)


def _plain(text: str) -> str:
    return _MARKS.sub(lambda m: m.group(0).strip("*`"), text)


def _table(pdf: _Pdf, table: Table) -> None:
    columns = len(table.header)
    size = 8.0 if columns <= 6 else 7.0 if columns <= 9 else 6.0
    pdf.set_font(FONT, "", size)
    widths = [2.2 if i < table.text_columns else 1.0 for i in range(columns)]
    align = ["LEFT" if i < table.text_columns else "RIGHT" for i in range(columns)]
    with pdf.table(col_widths=widths, text_align=align, line_height=size * 0.5,
                   headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
                   first_row_as_headings=True, repeat_headings=1) as t:
        for cells in [table.header, *table.rows]:
            row = t.row()
            for cell in cells:
                row.cell(_plain(str(cell)))
    pdf.set_font(FONT, "", BODY)


def _figure(pdf: _Pdf, figure: Figure) -> None:
    with Image.open(figure.path) as image:
        px_w, px_h = image.size
        dpi = float((image.info.get("dpi") or (100, 100))[0]) or 100.0
    width = min(pdf.epw, px_w / dpi * 25.4)
    height = width * px_h / px_w
    if height > MAX_FIGURE_HEIGHT * pdf.eph:
        height = MAX_FIGURE_HEIGHT * pdf.eph
        width = height * px_w / px_h
    if pdf.get_y() + height + 2 * LINE > pdf.h - pdf.b_margin:
        pdf.add_page()
    pdf.image(str(figure.path), x=pdf.l_margin + (pdf.epw - width) / 2, w=width, h=height)
    pdf.set_font(FONT, "", BODY - 1)
    pdf.multi_cell(0, LINE, figure.caption, align="C")
    pdf.set_font(FONT, "", BODY)


def _block(pdf: _Pdf, block: Block) -> None:
    if isinstance(block, Para):
        _rich(pdf, block.text)
    elif isinstance(block, Bullets):
        _bullets(pdf, block.items)
    elif isinstance(block, Table):
        _table(pdf, block)
    else:
        _figure(pdf, block)
    pdf.ln(2)


def _section(pdf: _Pdf, section: Section, level: int) -> None:
    if pdf.get_y() > pdf.h - pdf.b_margin - 30:  # no heading alone at the foot of a page
        pdf.add_page()
    pdf.start_section(_plain(section.title), level=level - 2)
    pdf.set_font(FONT, "B", HEADINGS.get(level, BODY))
    pdf.ln(2)
    pdf.multi_cell(0, HEADINGS.get(level, BODY) * 0.5, _plain(section.title))
    pdf.ln(1.5)
    pdf.set_font(FONT, "", BODY)
    for block in section.blocks:
        _block(pdf, block)
    for sub in section.subsections:
        _section(pdf, sub, level + 1)


def render(doc: Document) -> bytes:
    """The PDF file's bytes."""
    pdf = _Pdf(doc.title)
    pdf.add_page()
    pdf.set_font(FONT, "B", HEADINGS[1])
    pdf.multi_cell(0, 9, doc.title)
    pdf.ln(2)
    for block in doc.intro:
        _block(pdf, block)
    for section in doc.sections:
        _section(pdf, section, 2)
    return bytes(pdf.output())
