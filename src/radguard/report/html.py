"""One self-contained HTML page per report: inline CSS and SVG, no scripts, no downloads."""

from __future__ import annotations

import html
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:70rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.verdict{padding:.8rem 1rem;border-radius:.4rem;font-weight:600;display:inline-block}
.pass{background:#dff3e4;color:#13602b}.fail{background:#fbe0e0;color:#8a1c1c}
table{border-collapse:collapse;width:100%;font-size:.85rem}
td,th{border-bottom:1px solid #dde1e8;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}.num{text-align:right}.muted{color:#6b7280}
"""


def _bars(values: dict[str, float], width: int = 420) -> str:
    """A horizontal bar chart (shares between 0 and 1) as inline SVG."""
    rows = list(values.items())
    height = 22 * len(rows) + 8
    parts = [f'<svg width="{width + 230}" height="{height}" role="img">']
    for index, (label, value) in enumerate(rows):
        y = 4 + 22 * index
        share = max(0.0, min(1.0, float(value)))
        colour = "#2e8b57" if share >= 0.999 else ("#d97706" if share >= 0.9 else "#b91c1c")
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>')
        parts.append(f'<rect x="170" y="{y}" width="{width}" height="16" fill="#eef0f4"/>')
        parts.append(
            f'<rect x="170" y="{y}" width="{share * width:.1f}" height="16" fill="{colour}"/>'
        )
        parts.append(f'<text x="{width + 178}" y="{y + 13}" font-size="12">{share:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_verify_html(data: dict[str, Any]) -> str:
    """The verification report of :func:`radguard.verify.verify` (its ``to_json()``)."""
    passed = data["passed"]
    esc = html.escape
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>radguard verify</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>radguard verification report</h1>",
        f"<p class='verdict {'pass' if passed else 'fail'}'>"
        f"{'PASSED: nothing identifying found' if passed else 'FAILED: see findings'}</p>",
        *(
            f"<p class='muted'>not checked: {esc(name)} ({esc(result)})</p>"
            for name, result in data["checks"].items()
            if result.startswith("not run")
        ),
        f"<p class='muted'>mode {esc(data['mode'])}, policy {esc(data['policy'])}, "
        f"{data['files_checked']} files checked against {data['originals_read']} originals "
        f"in {data['seconds']} s</p>",
        "<h2>Checks</h2><table><tr><th>check</th><th>result</th></tr>",
    ]
    for name, result in data["checks"].items():
        out.append(f"<tr><td>{esc(name)}</td><td>{esc(result)}</td></tr>")
    out.append("</table>")
    scores = data.get("scores") or {}
    shares = {k: v["share"] for k, v in scores.get("categories", {}).items()}
    if shares:
        out.append("<h2>Answer key: share of required actions done right</h2>")
        out.append(_bars(shares))
        extra = {k: v for k, v in scores.items() if k != "categories"}
        if extra:
            out.append("<table>")
            for key, value in extra.items():
                out.append(f"<tr><td>{esc(key)}</td><td>{esc(str(value))}</td></tr>")
            out.append("</table>")
    for title, rows in (
        ("Findings", data["findings"]),
        ("Retained by option (not findings)", data["retained"]),
    ):
        out.append(f"<h2>{title} ({len(rows)})</h2>")
        if not rows:
            out.append("<p class='muted'>none</p>")
            continue
        out.append(
            "<table><tr><th>file</th><th>tag path</th><th>category</th>"
            "<th>found (masked)</th><th>why</th></tr>"
        )
        for row in rows[:2000]:
            out.append(
                "<tr>"
                + "".join(
                    f"<td>{esc(str(row[k]))}</td>"
                    for k in ("file", "path", "category", "found", "why")
                )
                + "</tr>"
            )
        out.append("</table>")
        if len(rows) > 2000:
            out.append(f"<p class='muted'>{len(rows) - 2000} more in the JSON report</p>")
    risk = data.get("risk")
    if risk:
        out.append("<h2>Re-identification risk of the released set</h2>")
        out.append(_risk_section(risk))
    out.append("</body></html>")
    return "\n".join(out)


def _histogram(sizes: dict[str, int], width: int = 520, height: int = 160) -> str:
    """Records per equivalence-class size, as an inline SVG column chart."""
    items = sorted((int(k), int(k) * v) for k, v in sizes.items())
    if not items:
        return "<p class='muted'>no records</p>"
    top = max(v for _, v in items)
    step = width / len(items)
    parts = [f'<svg width="{width + 40}" height="{height + 40}" role="img">']
    for index, (size, records) in enumerate(items):
        bar = (height - 24) * records / top
        x, y = 30 + index * step, height - bar
        colour = "#b91c1c" if size == 1 else ("#d97706" if size < 5 else "#2e8b57")
        width_bar = max(step - 4, 2)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width_bar:.1f}" '
            f'height="{bar:.1f}" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{x + width_bar / 2 - 6:.1f}" y="{y - 4:.1f}" font-size="11">{records}</text>'
        )
        parts.append(
            f'<text x="{x + width_bar / 2 - 4:.1f}" y="{height + 14}" font-size="11">{size}</text>'
        )
    parts.append(
        f'<text x="30" y="{height + 32}" font-size="11">records by equivalence class '
        "size (red: unique, amber: below 5)</text></svg>"
    )
    return "".join(parts)


def _risk_curve(risks: list[float], width: int = 520, height: int = 140) -> str:
    """Risk per record, highest first, as an inline SVG step line."""
    if not risks:
        return ""
    ordered = sorted(risks, reverse=True)
    points = " ".join(
        f"{30 + width * i / max(1, len(ordered) - 1):.1f},{10 + (height - 10) * (1 - r):.1f}"
        for i, r in enumerate(ordered)
    )
    return (
        f'<svg width="{width + 40}" height="{height + 30}" role="img">'
        f'<polyline points="{points}" fill="none" stroke="#1d4ed8" stroke-width="2"/>'
        f'<text x="30" y="{height + 24}" font-size="11">records, highest risk first '
        "(y: prosecutor risk 0..1)</text></svg>"
    )


def _fmt(value: Any) -> str:
    return "n/a (no population given)" if value is None else f"{float(value):.3f}"


def _risk_section(data: dict[str, Any]) -> str:
    """Risk figures and plots, shared by the risk report and the verification report."""
    esc = html.escape
    rows = [
        ("records", data["records"]),
        ("k-anonymity", data["k_anonymity"]),
        ("unique records", f"{data['unique_fraction']:.1%}"),
        (
            "prosecutor risk (highest / average)",
            f"{data['prosecutor_risk']:.3f} / {data['average_prosecutor_risk']:.3f}",
        ),
        ("journalist risk", _fmt(data.get("journalist_risk"))),
        ("marketer risk", _fmt(data.get("marketer_risk"))),
        ("quasi-identifiers", ", ".join(data["quasi_identifiers"])),
    ]
    out = ["<table>"]
    out += [f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in rows]
    out.append("</table><h3>Equivalence classes</h3>")
    out.append(_histogram(data.get("class_sizes", {})))
    sizes = {int(k): v for k, v in data.get("class_sizes", {}).items()}
    risks = [1 / size for size, classes in sizes.items() for _ in range(size * classes)]
    out.append("<h3>Risk per record</h3>")
    out.append(_risk_curve(risks))
    return "\n".join(out)


def render_risk_html(data: dict[str, Any]) -> str:
    """The re-identification risk report (``RiskReport.to_json()`` plus suggestions)."""
    esc = html.escape
    limit = data.get("max_prosecutor_allowed")
    verdict = ""
    if limit is not None:
        ok = data["prosecutor_risk"] <= limit
        verdict = (
            f"<p class='verdict {'pass' if ok else 'fail'}'>prosecutor risk "
            f"{data['prosecutor_risk']:.3f} {'within' if ok else 'above'} the limit "
            f"{limit}</p>"
        )
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>radguard risk</title>"
        f"<style>{_CSS}</style></head><body><h1>Re-identification risk</h1>",
        verdict,
        _risk_section(data),
    ]
    suggestions = data.get("suggestions", [])
    if suggestions:
        out.append(
            "<h2>Generalizations (risk after each)</h2><table><tr><th>change</th>"
            "<th>prosecutor risk</th><th>unique</th></tr>"
        )
        for item in [*suggestions[:15], *([data["plan"]] if data.get("plan") else [])]:
            out.append(
                f"<tr><td>{esc(str(item.get('description', '')))}</td>"
                f"<td class='num'>{item.get('prosecutor_risk', 0):.3f}</td>"
                f"<td class='num'>{item.get('unique_fraction', 0):.1%}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
