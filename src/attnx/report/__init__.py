"""Figures and tables of analysis results."""

from attnx.report.figures import make_report

__all__ = ["make_report"]
