"""`loraforge report RUN_DIR`: one HTML page and a Markdown twin, built from the run's JSON files only."""

from loraforge.report.build import build_report

__all__ = ["build_report"]
