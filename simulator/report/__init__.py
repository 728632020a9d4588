"""HTML report of a recorded run: `write_report(run_dir)` writes run_dir/report.html."""

from simulator.report.data import ReportData, load_report_data
from simulator.report.html import build_report_html, write_report

__all__ = ["ReportData", "build_report_html", "load_report_data", "write_report"]
