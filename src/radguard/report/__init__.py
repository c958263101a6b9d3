"""Reports: self-contained HTML pages (and their JSON) for people who sign releases off."""

from radguard.report.html import render_risk_html, render_verify_html

__all__ = ["render_risk_html", "render_verify_html"]
