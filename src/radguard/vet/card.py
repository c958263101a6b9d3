"""The privacy card: one JSON document and one self-contained HTML page per audit.

The HTML reuses the report package's stylesheet and bar charts; the log-log ROC, the image
grids and the tables are drawn here (inline SVG and PNG data URIs, no scripts, no downloads).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.report.html import _CSS, _bars

_COLOURS = ("#1d4ed8", "#b91c1c", "#2e8b57", "#d97706", "#7c3aed", "#0f766e")


def write_card(card: dict[str, Any], out: Path | str) -> tuple[Path, Path]:
    """Write ``<out>.json`` and ``<out>.html`` (``out`` without suffix); returns both paths."""
    base = Path(out)
    if base.suffix in (".json", ".html"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
    json_path.write_text(json.dumps(card, indent=1, default=_jsonable) + "\n")
    html_path.write_text(render_card_html(card))
    return json_path, html_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def loglog_roc_svg(curves: dict[str, list[tuple[float, float]]], size: int = 360) -> str:
    """ROC curves on log-log axes (1e-3..1 or the smallest FPR present), chance diagonal."""
    low = 1e-3
    for points in curves.values():
        positive = [f for f, _ in points if f > 0]
        if positive:
            low = min(low, min(positive))
    low = 10 ** math.floor(math.log10(low))
    span = -math.log10(low)
    pad = 40

    def xy(f: float, t: float) -> tuple[float, float]:
        fx = (math.log10(max(f, low)) + span) / span
        ty = (math.log10(max(t, low)) + span) / span
        return pad + fx * size, 10 + (1 - ty) * size

    parts = [f'<svg width="{size + pad + 170}" height="{size + 50}" role="img">']
    parts.append(
        f'<rect x="{pad}" y="10" width="{size}" height="{size}" fill="none" stroke="#999"/>'
    )
    decade = low
    while decade <= 1.0 + 1e-9:
        x, y = xy(decade, decade)
        parts.append(f'<text x="{x - 10:.0f}" y="{size + 26}" font-size="10">{decade:g}</text>')
        parts.append(f'<text x="2" y="{y + 4:.0f}" font-size="10">{decade:g}</text>')
        decade *= 10
    (x0, y0), (x1, y1) = xy(low, low), xy(1, 1)
    parts.append(
        f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
        'stroke="#aaa" stroke-dasharray="4 3"/>'
    )
    for index, (name, points) in enumerate(curves.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        line = " ".join("{:.1f},{:.1f}".format(*xy(f, t)) for f, t in points if f > 0)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        parts.append(
            f'<text x="{size + pad + 8}" y="{24 + 16 * index}" font-size="11" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append(
        f'<text x="{pad}" y="{size + 44}" font-size="11">false positive rate (log) vs true '
        "positive rate (log); dashed: chance</text></svg>"
    )
    return "".join(parts)


def image_png(image: NDArray[Any], scale: int = 3) -> str:
    """A grayscale image in [0, 1] as a PNG data URI (upscaled, nearest neighbour)."""
    from PIL import Image

    array = np.clip(np.asarray(image, dtype=np.float64).squeeze(), 0, 1)
    picture = Image.fromarray((array * 255).astype(np.uint8), mode="L")
    picture = picture.resize(
        (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    columns = columns or [c for c in rows[0] if not isinstance(rows[0][c], (dict, list))]
    out = ["<table><tr>", *(f"<th>{html.escape(c)}</th>" for c in columns), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for column in columns:
            value = row.get(column)
            if isinstance(value, float):
                text = f"{value:.4g}"
            elif isinstance(value, list):
                text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
            else:
                text = str(value)
            out.append(f"<td>{html.escape(text)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, metric in metrics.items():
        row: dict[str, Any] = {
            "attack": name,
            "AUC": metric["auc"],
            "AUC 95% CI": metric["auc_ci95"],
        }
        for level, item in metric["tpr_at_fpr"].items():
            row[f"TPR@{float(level):.1%} FPR"] = item["tpr"]
            row[f"CI@{float(level):.1%}"] = item["ci95"]
        rows.append(row)
    return rows


def render_card_html(card: dict[str, Any]) -> str:
    """The HTML privacy card of any audit (membership, memorization, gradients, DP)."""
    esc = html.escape
    passed = card.get("verdict") == "pass"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>radguard privacy card: {esc(card['kind'])}</title>"
        f"<style>{_CSS}img{{image-rendering:pixelated;margin:2px}}</style></head><body>",
        f"<h1>Privacy card: {esc(card['kind'])}</h1>",
        f"<p class='verdict {'pass' if passed else 'fail'}'>"
        f"{'PASS' if passed else 'FAIL'}: {esc(card.get('verdict_reason', card['verdict']))}</p>",
        f"<h2>Threat model</h2><p>{esc(card.get('threat_model', ''))}</p>",
        "<h2>Data</h2>",
        _table([{"item": k, "value": v} for k, v in card.get("data", {}).items()]),
    ]
    if card.get("checks"):
        out.append("<h2>Checks against the policy</h2>")
        out.append(_table(card["checks"]))
    if "roc" in card:  # membership audits, and the DP card that carries one
        out.append("<h2>Attacks</h2>")
        out.append(_table(_metrics_rows(card["metrics"])))
        out.append(
            "<p class='muted'>AUC: percentile bootstrap; TPR: Clopper-Pearson 95%, "
            "conditional on the threshold set from non-member scores.</p>"
        )
        out.append("<h2>ROC (log-log)</h2>")
        out.append(loglog_roc_svg({k: [tuple(p) for p in v] for k, v in card["roc"].items()}))
        out.append("<h2>Per patient</h2>")
        out.append(_table(_metrics_rows({"per-patient (primary)": card["patient_metrics"]})))
        out.append("<h2>Most exposed patients</h2>")
        out.append(_table(card["most_exposed_patients"]))
        for name, rows in card.get("subgroups", {}).items():
            out.append(f"<h2>Subgroup: {esc(name)}</h2>")
            out.append(_table(rows))
    if card.get("utility"):
        out.append("<h2>Utility</h2>")
        out.append(_table([{"figure": k, "value": v} for k, v in card["utility"].items()]))
    if card.get("shares"):
        out.append("<h2>Shares</h2>")
        out.append(_bars(card["shares"]))
    for title, rows in card.get("tables", {}).items():
        out.append(f"<h2>{esc(title)}</h2>")
        out.append(_table(rows))
    for title, pairs in card.get("image_pairs", {}).items():
        out.append(f"<h2>{esc(title)}</h2><table>")
        for pair in pairs:
            cells = "".join(f"<img src='{uri}' alt='image'>" for uri in pair["images"])
            out.append(f"<tr><td>{cells}</td><td>{esc(pair['caption'])}</td></tr>")
        out.append("</table>")
    if card.get("notes"):
        out.append("<h2>Notes</h2><ul>")
        out += [f"<li>{esc(n)}</li>" for n in card["notes"]]
        out.append("</ul>")
    out.append(
        "<p class='muted'>Full figures, per-record and per-patient scores: the JSON "
        "card beside this page.</p></body></html>"
    )
    return "\n".join(out)
