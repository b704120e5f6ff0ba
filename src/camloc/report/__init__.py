"""Evaluation reports: JSON for machines, HTML for people."""

from camloc.report.html import figure_rows, render_html, write_report

__all__ = ["figure_rows", "render_html", "write_report"]
