"""The parts every self-contained page shares (run report and sweep report): the document
shell with styles, plotly.js and the chart loader inline, chart blocks and KPI tiles."""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from simulator.report.plotting import CONFIG
from simulator.report.style import CONTENT_SECURITY_POLICY, CSS, LOADER


@cache
def plotly_js() -> str:
    """plotly.js's "basic" build (scatter and bar: all the reports draw), vendored from npm's
    plotly.js-basic-dist-min 4.1.1 (MIT, see assets/plotly-LICENSE): a quarter of the full
    bundle, so a report opens ~1 s sooner. Read once per process."""
    return (resources.files("simulator.report") / "assets" / "plotly-basic.min.js").read_text(
        "utf-8"
    )


def script_json(value: Any) -> str:  # noqa: ANN401 - any JSON-ready value
    # "</" inside a <script> block would end it; "<\/" is the same JSON string
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def chart(name: str, figure: dict[str, Any], caption: str = "") -> str:
    """A chart's <div> and, next to it, its figure as a JSON block the loader draws."""
    text = f'<p class="caption">{caption}</p>' if caption else ""
    return (
        f'{text}<div class="chart" id="chart-{name}" data-figure="figure-{name}"></div>'
        f'<script type="application/json" id="figure-{name}">{script_json(figure)}</script>'
    )


def kpi(label: str, text: str, unit: str = "", tone: str = "") -> str:
    small = f"<small>{escape(unit)}</small>" if unit else ""
    return (
        f'<div class="kpi"><div class="label">{escape(label)}</div>'
        f'<div class="value {tone}">{escape(text)}{small}</div></div>'
    )


def document(title: str, header: str, body: str, footer: str, *, css: str = "") -> str:
    """The whole page: `header`, `body` and `footer` are HTML; `css` adds page styles."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>{escape(title)}</title><style>{CSS}{css}</style></head><body>"
        f"{header}<main>{body}</main><footer>{footer}</footer>"
        f'<script type="application/json" id="plot-config">{script_json(CONFIG)}</script>'
        # plotly.js last: the tables are painted while its ~5 MB are still being parsed
        f"<script>{plotly_js()}</script><script>{LOADER}</script></body></html>\n"
    )
