"""A tiny document model (headings, paragraphs, tables, images) and its two renderers: HTML and Markdown."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Image:
    path: Path
    caption: str


Block = Heading | Para | Table | Image


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (dict, list)):
        import json

        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 160 else text[:157] + "..."
    return str(value)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#202124;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #dadce0;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #dadce0;padding:.25em .6em;text-align:left;vertical-align:top;max-width:420px;
overflow-wrap:anywhere}
th{background:#f1f3f4}figure{margin:1em 0}figcaption{color:#5f6368;font-size:.9em}img{max-width:100%}
"""


def to_html(title: str, blocks: list[Block]) -> str:
    """A self-contained page: the CSS is inline and the plots are embedded as data URIs."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header))
            out.append("</tr></thead><tbody>")
            for row in block.rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def _md_cell(value: Any) -> str:
    return cell(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list[Block], relative_to: Path) -> str:
    """The same content in Markdown; plots are linked as files next to the report."""
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{block.caption}]({block.path.relative_to(relative_to).as_posix()})", ""]
    return "\n".join(out)
