"""The pieces of the self-contained report.html: its style sheet, tables, embedded plots and sample gallery.

Only HTML: ``ctrldial.reporting`` decides what goes into the page, these say how it looks.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:4px 7px;vertical-align:top}
.wide{overflow-x:auto}table.g{table-layout:fixed;width:100%}table.g td{overflow-wrap:anywhere}
th{background:#f2f2f2;text-align:left}td.n{text-align:right;white-space:nowrap}img{max-width:100%;border:1px solid #eee}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}.ctx{color:#555;font-size:13px}.ok{color:#1a7f37}.bad{color:#b42318}
.muted{color:#777;font-size:13px}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"""


def html_table(header: list[str], cells: list[list[str]], numeric_from: int = 0) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if numeric_from and i >= numeric_from else ''}>{html.escape(c)}</td>"
                                    for i, c in enumerate(line)) + "</tr>" for line in cells)
    return f"<div class=wide><table><tr>{head}</tr>{body}</table></div>"


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def gallery_html(items: list[dict[str, Any]], labels: list[str]) -> str:
    parts = []
    for it in items:
        ctx = "".join(f"<li>{html.escape(u)}</li>" for u in it["context"]) or "<li><em>(no context)</em></li>"
        parts.append(f"<h3>{html.escape(str(it['dialogue_id']))}, turn {it['turn']}</h3><ol class=ctx>{ctx}</ol>"
                     f"<p class=ctx>reference ({html.escape(str(it['reference_label']))}): {html.escape(str(it['reference']))}</p>")
        head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
        body = ""
        for model, label, gens in it["rows"]:
            tds = ""
            for lab in labels:
                g = gens.get(lab) or {}
                pred = g.get("predicted")
                mark = "" if pred is None else (f" <span class=ok>✓</span>" if pred == lab else f" <span class=bad>✗ {html.escape(pred)}</span>")
                tds += f"<td>{html.escape(g.get('generation', '')) or '<em>(empty)</em>'}{mark}</td>"
            body += f"<tr><th>{html.escape(model)}<br>{html.escape(label)}</th>{tds}</tr>"
        parts.append(f"<table class=g><tr><th>run</th>{head}</tr>{body}</table>")
    return "".join(parts)
