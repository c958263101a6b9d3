"""The defacing report: one self-contained HTML page with the renders, so a person can look."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

from radguard.deface.series import SeriesResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:80rem}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}
.defaced{color:#13602b}.no-face{color:#6b7280}.refused{color:#8a1c1c}
figure{display:inline-block;margin:.3rem;text-align:center;font-size:.75rem}
img{height:180px;background:#000}
table{border-collapse:collapse;font-size:.85rem}td,th{padding:.2rem .6rem;text-align:left}
"""


def write_report(results: Sequence[SeriesResult], path: Path) -> None:
    """Write ``path``: per volume the verdict, the proof and the renders before and after."""
    esc = html.escape
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>radguard deface</title>"
        f"<style>{_CSS}</style></head><body><h1>radguard defacing report</h1>",
        "<p>" + ", ".join(f"{v} {esc(k)}" for k, v in sorted(counts.items())) + "</p>",
        "<p>Only <b>defaced</b> and <b>no-face</b> volumes may be released; <b>refused</b> "
        "never counts as de-identified. A render no detector recognizes is not proof that no "
        "person could: look at the renders.</p>",
    ]
    for result in results:
        status = result.status.value
        out.append(f"<h2>{esc(result.key)} <span class='{status}'>{esc(status)}</span></h2>")
        out.append(f"<p>{esc(result.reason)}</p>")
        proof = dict(result.proof)
        if proof:
            checks = proof.pop("checks", {})
            out.append("<table>")
            for name, ok in checks.items():
                out.append(f"<tr><td>{esc(name)}</td><td>{'pass' if ok else 'FAIL'}</td></tr>")
            for name in (
                "embedding_distance",
                "landmark_shift",
                "brain_voxels_changed",
                "removed_ml",
                "depth_mm",
                "attempts",
                "frame",
                "seconds",
            ):
                if name in proof:
                    out.append(
                        f"<tr><td>{esc(name)}</td><td>{esc(json.dumps(proof[name]))}</td></tr>"
                    )
            out.append("</table>")
        for stage in ("before", "after"):
            shots = [
                (k.split("/", 1)[1], v) for k, v in result.renders.items() if k.startswith(stage)
            ]
            if shots:
                out.append(f"<div><b>{stage}</b><br>")
                for view, png in shots:
                    data = base64.b64encode(png).decode()
                    out.append(
                        f"<figure><img alt='{esc(stage)} {esc(view)}' "
                        f"src='data:image/png;base64,{data}'><figcaption>{esc(view)}"
                        "</figcaption></figure>"
                    )
                out.append("</div>")
    out.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
