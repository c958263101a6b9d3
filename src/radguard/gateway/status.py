"""``radguard serve status``: what the gateway holds and what went wrong, read from the spool.

Works whether or not the gateway runs: queue depths, pending deliveries (attempts and last
error), every dead-letter entry with its reason, rejected associations, and the running
process's counters (from ``status.json``, written every second).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from radguard.gateway.config import GatewayConfig
from radguard.gateway.spool import Spool, fsync_dir, read_json, write_json_atomic


def gateway_status(config: GatewayConfig) -> dict[str, Any]:
    """A JSON-ready report of the spool named in ``config``."""
    spool = Spool(config.spool, b"")
    if not config.spool.exists():
        return {"spool": str(config.spool), "running": False, "exists": False}
    spool.open(exclusive=False)
    pending: dict[str, list[dict[str, Any]]] = {}
    for destination in config.destinations:
        pending[destination.name] = [
            {
                "entry": entry.name,
                "instances": len(meta.get("files", [])),
                "attempts": meta.get("attempts", 0),
                "sent": meta.get("sent", False),
                "last_error": meta.get("last_error", ""),
                "next_attempt_in_s": max(0.0, round(meta.get("next_attempt", 0) - time.time(), 1)),
            }
            for entry, meta in spool.entries(destination.name)
        ]
    running = read_json(config.spool / "status.json") or {}
    forwarded = 0
    log = config.spool / "records" / "forwarded.jsonl"
    if log.exists():
        with log.open(encoding="utf-8") as handle:
            forwarded = sum(1 for _ in handle)
    dead = spool.dead_letters()
    rejected: list[dict[str, Any]] = []
    log_path = config.spool / "records" / "rejected.jsonl"
    if log_path.exists():
        with log_path.open(encoding="utf-8") as handle:
            for text in handle.readlines()[-20:]:
                try:
                    rejected.append(json.loads(text))
                except json.JSONDecodeError:
                    continue
    return {
        "spool": str(config.spool),
        "running": spool.in_use(),
        "queue": spool.depth(),
        "pending": pending,
        "dead_letters": dead,
        "forwarded_studies": forwarded,
        "rejected_associations": rejected,
        "last_status": {k: running.get(k) for k in ("at", "metrics", "destination_errors")},
        "healthy": not dead,
    }


def requeue(config: GatewayConfig, entry: str | None = None) -> list[str]:
    """Move dead-lettered deliveries (``forward-<destination>``) back to their outbox."""
    root = config.spool / "deadletter"
    moved: list[str] = []
    names = {d.name for d in config.destinations}
    if not root.exists():
        return moved
    for kind in sorted(root.glob("forward-*")):
        destination = kind.name[len("forward-") :]
        if destination not in names:
            continue
        for folder in sorted(kind.iterdir()):
            if entry is not None and folder.name != entry:
                continue
            meta = read_json(folder / "entry.json")
            if meta is None:
                continue
            meta.update({"attempts": 0, "next_attempt": 0.0, "last_error": "", "requeued": True})
            write_json_atomic(folder / "entry.json", meta)
            (folder / "reason.json").unlink(missing_ok=True)
            box = config.spool / "outbox" / destination
            box.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.rename(folder, box / folder.name)
            fsync_dir(box)
            moved.append(f"{destination}/{folder.name}")
    return moved


def format_status(report: dict[str, Any]) -> str:
    """A short human-readable rendering (``--json`` prints the report itself)."""
    if not report.get("exists", True):
        return f"spool {report['spool']} does not exist (the gateway never ran)"
    lines = [
        f"spool: {report['spool']} ({'running' if report['running'] else 'not running'})",
        "queue: " + ", ".join(f"{k} {v}" for k, v in report["queue"].items()),
        f"forwarded studies: {report['forwarded_studies']}",
    ]
    counters = (report.get("last_status", {}).get("metrics") or {}).get("counters", {})
    if counters:
        lines.append("counters: " + json.dumps(counters, sort_keys=True))
    for name, entries in report["pending"].items():
        lines.append(f"destination {name}: {len(entries)} pending")
        for item in entries:
            if item["last_error"]:
                lines.append(
                    f"  {item['entry']}: {item['attempts']} failed attempts, "
                    f"next in {item['next_attempt_in_s']} s: {item['last_error']}"
                )
    for item in report["rejected_associations"]:
        lines.append(
            f"rejected association: calling AE {item['calling_ae_title']!r} "
            f"from {item['address']} at {item['at']}"
        )
    dead = report["dead_letters"]
    lines.append(f"dead letters: {len(dead)}")
    for item in dead:
        lines.append(f"  {item['entry']} ({item.get('files', '?')} files): {item['reason']}")
    return "\n".join(lines)
