"""``radguard verify``: scan a de-identified set for anything identifying that is left.

Three modes, chosen by what is at hand:

- **paired**: originals and the run's manifest (``<DEID>.run/manifest.jsonl``) are available, so
  every output is checked against the identifying values of all originals and against the
  dates of its own original, and series, studies and references are checked one to one;
- **global**: originals without a manifest: the same identifier search, set-level integrity;
- **generic**: the outputs alone: generic PHI patterns and census name lists.

Values that the policy's options retain on purpose (UIDs, device or institution identity,
full dates) are reported as "retained by option", never as findings.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radguard.deid.engine import mask
from radguard.settings import Policy, load_policy
from radguard.verify.generic import generic_findings, pseudonym_pattern
from radguard.verify.identifiers import (
    RETAINING_OPTION,
    Category,
    IdentifierSet,
    date_patterns,
    normalize,
)
from radguard.verify.scan import Scanned, iter_files, scan_file

_DATE_TAGS_VRS = frozenset({"DA", "DT"})
# Numbers identify no one: identifier search skips numeric VRs (where IDs cannot be stored).
_NUMERIC_VRS = frozenset(
    {"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT", "OF", "OD", "OL", "OV", "TM"}
)
# Coded vocabulary: a single name component matching a code meaning is a word, not a leak
# (whole names and IDs are still searched there).
_VOCABULARY = frozenset({0x00080100, 0x00080102, 0x00080104, 0x0040A040, 0x00080103})
# radguard's own record keeping names its version and options, nothing of the patient.
_RECORD_KEEPING = frozenset({0x00120063, 0x00120064, 0x00120062, 0x00280303})
_NOT_RUN = "not run"


@dataclass
class Finding:
    """One thing found: where, what (masked), and why it counts."""

    file: str
    path: str
    category: str
    found: str
    why: str


@dataclass
class VerifyReport:
    mode: str
    policy: str
    files_checked: int = 0
    originals_read: int = 0
    findings: list[Finding] = field(default_factory=list)
    retained: list[Finding] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_checked: int = 0

    @property
    def passed(self) -> bool:
        return not self.findings and "failed" not in self.checks.values()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        data["findings_by_category"] = _by_category(self.findings)
        data["retained_by_category"] = _by_category(self.retained)
        return data


def _by_category(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for finding in findings:
        counts[finding.category] += 1
    return dict(sorted(counts.items()))


@dataclass
class _Original:
    """What is kept per original file for pairing (small: no PHI but UIDs and dates)."""

    sop: str
    study: str
    series: str
    references: tuple[str, ...]
    dates: frozenset[str]
    patient: str


def _manifest_pairs(deid: Path) -> dict[str, str]:
    """Output relative path -> input relative path, from the run's manifest."""
    manifest = deid.parent / f"{deid.name}.run" / "manifest.jsonl"
    pairs: dict[str, str] = {}
    if not manifest.exists():
        return pairs
    with manifest.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("status") == "released" and entry.get("output"):
                pairs[entry["output"]] = entry.get("input", "")
    return pairs


def verify(
    deid: Path,
    orig: Path | None = None,
    policy: Policy | None = None,
    answer_key: Path | None = None,
) -> VerifyReport:
    """Verify the de-identified set ``deid`` (against ``orig`` when given)."""
    started = time.perf_counter()
    policy = policy or load_policy()
    pairs = _manifest_pairs(deid) if orig is not None else {}
    mode = "generic" if orig is None else ("paired" if pairs else "global")
    report = VerifyReport(mode=mode, policy=policy.name)
    identifiers = IdentifierSet()
    originals: dict[str, _Original] = {}
    if orig is not None:
        root = orig.resolve()
        for path in iter_files(root):
            scanned = scan_file(path)
            if scanned.error or not scanned.sop_instance_uid:
                continue  # not DICOM: nothing of it can be in the outputs' headers
            report.originals_read += 1
            patient = identifiers.add_file(scanned)
            dates = frozenset(f.text for f in scanned.fields if f.vr in _DATE_TAGS_VRS and f.text)
            originals[_relative(path, root)] = _Original(
                scanned.sop_instance_uid,
                scanned.study_uid,
                scanned.series_uid,
                tuple(scanned.references),
                dates,
                patient,
            )
    matcher = identifiers.automaton()
    pseudonym = pseudonym_pattern(policy.pseudonyms.patient_id, policy.pseudonyms.patient_name)
    outputs: dict[str, Scanned] = {}
    root_out = deid.resolve()
    for path in iter_files(root_out):
        relative = _relative(path, root_out)
        if relative.startswith("radguard-release."):
            continue  # signed release manifest (its own check)
        report.files_checked += 1
        report.bytes_checked += path.stat().st_size
        scanned = scan_file(path)
        if scanned.error:
            report.findings.append(
                Finding(
                    relative,
                    "(file)",
                    "unreadable",
                    "",
                    f"released file cannot be read ({scanned.error})",
                )
            )
            continue
        _check_text(report, relative, "(file name)", normalize(relative), matcher, policy)
        preamble = scanned.preamble.strip(b"\x00")
        if preamble:
            _check_text(
                report,
                relative,
                "(preamble)",
                normalize(preamble.decode("latin-1")),
                matcher,
                policy,
            )
        original = originals.get(pairs.get(relative, ""))
        own_dates = date_patterns(original.dates) if original else set()
        own = identifiers.own(original.patient) if original else []
        for item in scanned.fields:
            if not item.text or item.tag in _RECORD_KEEPING:
                continue
            if item.vr == "UI":
                for uid in item.text.split("\\"):
                    uid = uid.strip().rstrip("\x00")
                    if uid in identifiers.uids:
                        _add(
                            report,
                            policy,
                            relative,
                            item.path,
                            Category.UID.value,
                            uid,
                            "original UID left",
                        )
                continue
            text = normalize(item.text)
            if item.vr not in _NUMERIC_VRS and item.vr not in _DATE_TAGS_VRS:
                _check_text(
                    report,
                    relative,
                    item.path,
                    text,
                    matcher,
                    policy,
                    vocabulary=item.tag in _VOCABULARY,
                )
                for pattern, category in own if item.tag not in _VOCABULARY else ():
                    if pattern in text:
                        _add(
                            report,
                            policy,
                            relative,
                            item.path,
                            category.value,
                            pattern.strip(),
                            f"{category.value.replace('_', ' ')} of this file's patient",
                        )
            if own_dates and item.vr not in _NUMERIC_VRS:
                for form in own_dates:
                    if form in text:
                        _add(
                            report,
                            policy,
                            relative,
                            item.path,
                            Category.DATE.value,
                            form.strip(),
                            "a date of this file's original",
                        )
                        break
            if mode == "generic":
                for found, why in generic_findings(item.tag, item.vr, item.text, pseudonym):
                    report.findings.append(
                        Finding(relative, item.path, "generic", mask(found), why)
                    )
        scanned.fields = []  # keep only what the integrity checks need
        outputs[relative] = scanned
    name = "identifiers in headers" if mode != "generic" else "generic PHI patterns"
    report.checks[name] = "passed" if not report.findings else "failed"
    if orig is not None:
        _integrity(report, originals, outputs, pairs)
    report.checks["burned-in text (OCR)"] = _burned_in(
        report, root_out, list(outputs), policy, matcher, identifiers, originals, pairs
    )
    if answer_key is not None:
        from radguard.verify.score import score_answer_key

        report.scores = score_answer_key(answer_key, deid, pairs, outputs)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _burned_in(
    report: VerifyReport,
    root: Path,
    released: list[str],
    policy: Policy,
    matcher: Any,
    identifiers: IdentifierSet,
    originals: dict[str, _Original],
    pairs: dict[str, str],
) -> str:
    """Read released pixels with the pixel stage's engine (when the policy cleans pixels)."""
    from radguard.profile.options import Option

    if Option.CLEAN_PIXEL_DATA not in policy.options:
        return f"{_NOT_RUN}: the policy does not select clean-pixel-data"
    from radguard.pixels.audit import read_released
    from radguard.pixels.clean import PixelCleaner
    from radguard.pixels.engines import EngineUnavailable

    try:
        cleaner = PixelCleaner(policy.pixels)
    except EngineUnavailable as error:
        report.findings.append(Finding("", "(7FE0,0010)", "burned_in", "", str(error)))
        return "failed"
    before = len(report.findings)
    for relative in released:
        original = originals.get(pairs.get(relative, ""))
        own = identifiers.own(original.patient) if original else []

        def reasons(text: str, own: list[tuple[str, Category]] = own) -> list[str]:
            normalized = normalize(text)
            why = [f"{c.value} of the originals" for _, c in matcher.find(normalized)]
            why += [f"{c.value} of this file's patient" for p, c in own if p in normalized]
            return why

        try:
            found = read_released(root / relative, policy.pixels, reasons, cleaner)
        except Exception as error:  # noqa: BLE001 - an unreadable image is itself a finding
            report.findings.append(
                Finding(relative, "(7FE0,0010)", "burned_in", "", f"pixels unreadable: {error}")
            )
            continue
        if found is None:
            continue
        for frame, text, why in found:
            report.findings.append(
                Finding(relative, f"(7FE0,0010)[frame {frame}]", "burned_in", mask(text), why)
            )
    return "failed" if len(report.findings) > before else "passed"


def _check_text(
    report: VerifyReport,
    relative: str,
    path: str,
    text: str,
    matcher: Any,
    policy: Policy,
    *,
    vocabulary: bool = False,
) -> None:
    for pattern, category in matcher.find(text):
        single_word = " " not in pattern.strip()
        if vocabulary and single_word and category in (Category.STAFF_NAME, Category.PATIENT_NAME):
            continue  # a code meaning such as 'Observer' is a word, not a name
        _add(
            report,
            policy,
            relative,
            path,
            category.value,
            pattern.strip(),
            f"{category.value.replace('_', ' ')} of the originals",
        )


def _add(
    report: VerifyReport, policy: Policy, file: str, path: str, category: str, value: str, why: str
) -> None:
    """Record what was found (masked): a finding, or retained when an option keeps it."""
    finding = Finding(file, path, category, mask(value), why)
    option = RETAINING_OPTION.get(Category(category))
    if option is not None and option in policy.options:
        finding.why += f" (retained by option {option.value})"
        report.retained.append(finding)
    else:
        report.findings.append(finding)


def _integrity(
    report: VerifyReport,
    originals: dict[str, _Original],
    outputs: dict[str, Scanned],
    pairs: dict[str, str],
) -> None:
    """References resolve, and no series or study was split or merged."""
    out_sops = {s.sop_instance_uid for s in outputs.values()}
    orig_sops = {o.sop for o in originals.values()}
    if pairs:
        by_input = {v: k for k, v in pairs.items()}
        sop_map = {
            originals[i].sop: outputs[o].sop_instance_uid
            for o, i in pairs.items()
            if i in originals and o in outputs
        }
        broken = 0
        for input_rel, original in originals.items():
            out_rel = by_input.get(input_rel)
            if out_rel is None or out_rel not in outputs:
                continue
            refs = set(outputs[out_rel].references)
            for ref in original.references:
                target = sop_map.get(ref)
                if target is not None and target not in refs:
                    broken += 1
                    report.findings.append(
                        Finding(
                            out_rel,
                            "(0008,1155)",
                            "reference",
                            mask(ref),
                            "a reference that resolved in the originals no longer resolves",
                        )
                    )
        report.checks["references resolve"] = "passed" if not broken else "failed"
        for level in ("series", "study"):
            forward: dict[str, set[str]] = defaultdict(set)
            backward: dict[str, set[str]] = defaultdict(set)
            for out_rel, input_rel in pairs.items():
                if input_rel not in originals or out_rel not in outputs:
                    continue
                before = getattr(originals[input_rel], level)
                after = (
                    outputs[out_rel].series_uid if level == "series" else outputs[out_rel].study_uid
                )
                forward[before].add(after)
                backward[after].add(before)
            split = sum(1 for v in forward.values() if len(v) > 1)
            merged = sum(1 for v in backward.values() if len(v) > 1)
            if split or merged:
                report.findings.append(
                    Finding(
                        "", f"({level})", "grouping", "", f"{split} {level} split, {merged} merged"
                    )
                )
            report.checks[f"{level} intact"] = "passed" if not (split or merged) else "failed"
        return
    resolved_before = sum(1 for o in originals.values() for r in o.references if r in orig_sops)
    resolved_after = sum(1 for s in outputs.values() for r in s.references if r in out_sops)
    ok = resolved_after >= resolved_before
    report.checks["references resolve"] = "passed" if ok else "failed"
    if not ok:
        report.findings.append(
            Finding(
                "",
                "(set)",
                "reference",
                "",
                f"{resolved_before - resolved_after} references that "
                "resolved in the originals no longer resolve",
            )
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name
