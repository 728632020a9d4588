"""The page's CSS, content security policy and chart loader: static text, kept apart from the
code that fills the page in."""

from __future__ import annotations

from typing import Final

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
"""The browser itself refuses any network request: the report must open offline, and a chart
library that tried to fetch a font or a map would fail loudly here rather than leak."""

CSS: Final = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff;
  --accent:#2563eb; --good:#15803d; --bad:#b91c1c; --warn:#b45309;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; scroll-padding-top: 64px; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 var(--sans); }
header.top { position: sticky; top: 0; z-index: 10; background: #111827; color: #f9fafb;
  box-shadow: 0 1px 3px rgba(0,0,0,.25); }
header.top .bar { max-width: 1320px; margin: 0 auto; padding: 10px 24px; display: flex;
  align-items: baseline; gap: 18px; flex-wrap: wrap; }
header.top h1 { font-size: 17px; margin: 0; font-weight: 600; letter-spacing: .01em; }
header.top .sub { color: #9ca3af; font-size: 13px; }
header.top nav { margin-left: auto; display: flex; gap: 4px; }
header.top nav a { color: #d1d5db; text-decoration: none; padding: 4px 10px; border-radius: 6px;
  font-size: 13px; }
header.top nav a:hover { background: #374151; color: #fff; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 48px; }
section { margin-bottom: 28px; }
h2 { font-size: 19px; margin: 0 0 12px; font-weight: 650; }
h3 { font-size: 15px; margin: 0 0 10px; font-weight: 600; color: #334155; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px; margin-bottom: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 16px; }
.grid > .card { margin-bottom: 0; }
.spaced { margin-top: 16px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .05em; }
.kpi .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums;
  margin-top: 2px; }
.kpi .value small { font-size: 12px; font-weight: 500; color: var(--muted); margin-left: 4px; }
.kpi .value.neg { color: var(--bad); } .kpi .value.pos { color: var(--good); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: baseline; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 2px solid
  var(--line); white-space: nowrap; }
tbody th { font-weight: 500; }
tbody tr:hover { background: #f9fafb; }
.num { text-align: right; white-space: nowrap; }
td.neg { color: var(--bad); }
td.time { font-family: var(--mono); font-size: 12px; white-space: nowrap; }
.unit { color: var(--muted); font-size: 12px; white-space: nowrap; }
.mono, td.mono { font-family: var(--mono); font-size: 12px; word-break: break-all; }
table.kv th { width: 170px; color: var(--muted); font-weight: 500; white-space: nowrap; }
table.kv td { overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  white-space: nowrap; }
.badge.ok { background: #dcfce7; color: var(--good); }
.badge.warn { background: #fef3c7; color: var(--warn); }
.chips { display: flex; flex-wrap: wrap; gap: 6px; }
.chip { background: #f1f5f9; border: 1px solid var(--line); border-radius: 6px;
  padding: 2px 8px; font-size: 12px; }
.chip b { font-weight: 600; }
.config-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr));
  gap: 4px 24px; }
.config-grid h4 { margin: 10px 0 2px; font-size: 13px; color: var(--accent); }
.config-grid table.kv th { width: 150px; }
.config-grid td.mono { word-break: normal; }
details summary { cursor: pointer; font-weight: 600; padding: 2px 0; }
details[open] summary { margin-bottom: 8px; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.note.empty { font-style: italic; }
.chart { width: 100%; }
.caption { color: var(--muted); font-size: 13px; margin: 0 0 6px; }
footer { max-width: 1320px; margin: 0 auto; padding: 0 24px 32px; color: var(--muted);
  font-size: 12px; }
"""

LOADER: Final = """
(function () {
  var config = JSON.parse(document.getElementById("plot-config").textContent);
  var charts = Array.prototype.slice.call(document.querySelectorAll("[data-figure]"));
  Promise.all(charts.map(function (div) {
    var figure = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    return Plotly.newPlot(div, figure.data, figure.layout, config);
  })).then(function () {
    document.body.dataset.chartsRendered = String(charts.length);
    document.body.dataset.renderedAtMs = String(Math.round(performance.now()));
  });
})();
"""
"""Draws every chart from its JSON block; marks the body once all are drawn (the browser test
and the load-time measurement wait for that mark)."""
