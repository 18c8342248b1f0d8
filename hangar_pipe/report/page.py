"""The report as one HTML file: the data as JSON, with the page's CSS and script inlined."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from hangar_pipe.core.atomic import atomic_write

_BODY = """<h1 id="title"></h1>
<p class="made" id="made"></p>
<h2>Runs and experiment points</h2>
<p class="hint">Click a heading to sort; tick runs to draw their training curves below.</p>
<div style="overflow-x: auto"><table class="runs" id="runs"></table></div>
<h2>Metrics across data commits</h2>
<div class="charts" id="commits"></div>
<h2>Training curves</h2>
<div class="charts" id="curves"></div>
<h2>Confusion matrices</h2>
<div class="charts" id="matrices"></div>
<h2>Pipeline</h2>
<div id="graph"></div>"""


def render(data: dict[str, Any]) -> str:
    """The page's HTML (self-contained: no file or network is fetched to view it)."""
    files = resources.files("hangar_pipe.report")
    css = files.joinpath("page.css").read_text()
    script = files.joinpath("page.js").read_text()
    plain = json.loads(json.dumps(data, default=str), parse_constant=lambda _: None)  # NaN, inf: none
    payload = json.dumps(plain).replace("<", "\\u003c")  # (no `</script>` or `<!--` in the block)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<title>{html.escape(data.get('title', 'hpipe report'))}</title>\n<style>\n{css}</style></head>\n"
            f"<body>\n{_BODY}\n<script type=\"application/json\" id=\"data\">{payload}</script>\n"
            f"<script>\n{script}</script>\n</body></html>\n")


def write(data: dict[str, Any], path: Path) -> Path:
    atomic_write(path, render(data).encode())
    return path
