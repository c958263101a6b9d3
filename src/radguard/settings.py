"""The policy: one frozen, typed object built from a named policy, a policy file and CLI flags.

A policy file is TOML (or YAML) and may ``extends`` a built-in policy or another file. Every
problem in a file is collected and reported together, each with the line it is on.
"""

from __future__ import annotations

import enum
import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from radguard.errors import PolicyError
from radguard.profile.options import Option

BUILTIN_POLICIES = ("basic", "research", "safe-harbor")
DEFAULT_POLICY = "research"


class OverrideAction(enum.Enum):
    """What a per-attribute override does (policy ``[[overrides]]`` ``action``)."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    HASH = "hash"
    SHIFT = "shift"
    REPLACE = "replace"
    CLEAN = "clean"


class Granularity(enum.Enum):
    DAY = "day"
    YEAR = "year"


class Allowance(enum.Enum):
    """Object kinds excluded by default because header rules cannot make them safe."""

    ENCAPSULATED_DOCUMENTS = "encapsulated-documents"
    VIDEO = "video"
    RAW_DATA = "raw-data"
    BURNED_IN_ANNOTATION = "burned-in-annotation"  # release pixels flagged as carrying text


@dataclass(frozen=True)
class Override:
    """A per-attribute rule: ``path`` is a tuple of tags (sequence path, then the attribute)."""

    path: tuple[int, ...]
    action: OverrideAction
    value: str = ""
    modality: str = ""
    sop_class: str = ""
    label: str = ""

    def applies(self, modality: str, sop_class: str) -> bool:
        return (not self.modality or self.modality == modality) and (
            not self.sop_class or self.sop_class == sop_class
        )


@dataclass(frozen=True)
class PrivateRule:
    """Keep or remove private elements of one creator (``elements`` empty = all)."""

    creator: str
    group: int
    elements: frozenset[int]
    keep: bool


@dataclass(frozen=True)
class Pseudonyms:
    """Formats of the patient pseudonyms; ``{hash:N}`` is N characters of the keyed digest."""

    patient_id: str = "RG{hash:12}"
    patient_name: str = "RG^{hash:8}"

    def validate(self) -> list[str]:
        problems = []
        for name, fmt in (("patient_id", self.patient_id), ("patient_name", self.patient_name)):
            if not re.search(r"\{hash:(\d+)\}", fmt):
                problems.append(f"pseudonyms.{name}: format {fmt!r} needs a {{hash:N}} field")
            elif not 6 <= int(re.search(r"\{hash:(\d+)\}", fmt).group(1)) <= 40:  # type: ignore[union-attr]
                problems.append(f"pseudonyms.{name}: hash length must be 6..40")
        return problems


@dataclass(frozen=True)
class Dates:
    """Per-patient date shift: the offset is drawn from [-max, -min] days by the key."""

    shift_min_days: int = 1
    shift_max_days: int = 3650
    granularity: Granularity = Granularity.DAY


@dataclass(frozen=True)
class Ages:
    """Ages over ``aggregate_over`` years become one category (HIPAA: 90 or older)."""

    aggregate_over: int | None = 89


@dataclass(frozen=True)
class RiskLimits:
    """Release gate on re-identification risk (``[risk]``); None: no gate."""

    max_prosecutor: float | None = None
    quasi_identifiers: tuple[str, ...] = ()
    population: int | None = None


class PixelScan(enum.Enum):
    """Which images the pixel stage reads (``pixels.scan``)."""

    TRIAGE = "triage"  # those likely to carry burned-in text (the triage rule)
    ALL = "all"  # every image with pixel data


class PixelEngine(enum.Enum):
    """OCR engine of the pixel stage (``pixels.engine``)."""

    RAPIDOCR = "rapidocr"
    TESSERACT = "tesseract"


class PixelReader(enum.Enum):
    """Who reads the lines the engine finds (``pixels.reader``; the ``rapidocr`` engine)."""

    RADGUARD = "radguard"  # radguard's packaged recognizer, PP-OCR's for lines in doubt
    PPOCR = "ppocr"  # PP-OCR's recognizer alone


class UnknownText(enum.Enum):
    """Text neither identifying nor a known clinical label (``pixels.unknown_text``)."""

    REDACT = "redact"
    KEEP = "keep"


PIXEL_PASSES = ("fused", "fine", "base", "local", "chroma", "invert", "flat")
TRIAGE_MODALITIES = frozenset(
    {"US", "XA", "RF", "CR", "DX", "MG", "ES", "XC", "OT", "SC", "DOC", "IVUS", "GM", "SM"}
)


@dataclass(frozen=True)
class DeviceLayout:
    """Fixed banner regions of a device, applied whether or not OCR finds text there.

    ``manufacturer`` and ``model`` are regular expressions matched (case-insensitively, in
    full) against Manufacturer and Manufacturer's Model Name; ``rows``/``columns`` restrict the
    layout to one image size; ``regions`` are (x, y, width, height) in pixels.
    """

    manufacturer: str
    model: str = ".*"
    rows: int | None = None
    columns: int | None = None
    regions: tuple[tuple[int, int, int, int], ...] = ()

    def matches(self, manufacturer: str, model: str, rows: int, columns: int) -> bool:
        return (
            re.fullmatch(self.manufacturer, manufacturer.strip(), re.IGNORECASE) is not None
            and re.fullmatch(self.model, model.strip(), re.IGNORECASE) is not None
            and self.rows in (None, rows)
            and self.columns in (None, columns)
        )


@dataclass(frozen=True)
class PixelPolicy:
    """Clean Pixel Data settings (``[pixels]``): triage, engine, what to redact or keep."""

    scan: PixelScan = PixelScan.TRIAGE
    modalities: frozenset[str] = TRIAGE_MODALITIES
    engine: PixelEngine = PixelEngine.RAPIDOCR
    reader: PixelReader = PixelReader.RADGUARD
    redact_all: bool = False
    unknown_text: UnknownText = UnknownText.REDACT
    keep: tuple[str, ...] = ()
    builtin_keep: bool = True
    spell_labels: bool = True
    margin: int = 3
    passes: tuple[str, ...] = ("fused", "fine")
    min_score: float = 0.5
    keyframe_interval: int = 25
    layouts: tuple[DeviceLayout, ...] = ()


@dataclass(frozen=True)
class Exclusions:
    modalities: frozenset[str] = frozenset()
    sop_classes: frozenset[str] = frozenset()
    series_description_patterns: tuple[str, ...] = ()
    study_description_patterns: tuple[str, ...] = ()
    allow: frozenset[Allowance] = frozenset()


@dataclass(frozen=True)
class Policy:
    """Everything the engine needs to know about what to do to a file. Picklable."""

    name: str
    sha256: str
    description: str = ""
    options: frozenset[Option] = frozenset()
    overrides: tuple[Override, ...] = ()
    private_rules: tuple[PrivateRule, ...] = ()
    pseudonyms: Pseudonyms = field(default_factory=Pseudonyms)
    dates: Dates = field(default_factory=Dates)
    ages: Ages = field(default_factory=Ages)
    exclude: Exclusions = field(default_factory=Exclusions)
    text_patterns: tuple[str, ...] = ()
    risk: RiskLimits = field(default_factory=RiskLimits)
    pixels: PixelPolicy = field(default_factory=PixelPolicy)

    def with_options(self, add: Iterable[Option] = (), drop: Iterable[Option] = ()) -> Policy:
        options = (self.options | frozenset(add)) - frozenset(drop)
        return replace(self, options=options)

    @property
    def option_names(self) -> list[str]:
        return sorted(o.value for o in self.options)


# ---------------------------------------------------------------------------------------------
# Loading


def load_policy(spec: str | Path | None = None) -> Policy:
    """Load a built-in policy by name or a policy file by path (None: the default policy)."""
    if spec is None:
        spec = DEFAULT_POLICY
    raw, source, text = _read(spec)
    data = _resolve_extends(raw, source, seen=set())
    problems: list[str] = []
    policy = _build(data, source, text, problems)
    if problems:
        raise PolicyError(source, problems)
    return policy


def check_policy(path: str | Path) -> list[str]:
    """Validate a policy file; return every problem (empty when valid)."""
    try:
        load_policy(path)
    except PolicyError as error:
        return error.problems
    return []


def _read(spec: str | Path) -> tuple[dict[str, Any], str, str]:
    if isinstance(spec, str) and spec in BUILTIN_POLICIES:
        text = resources.files("radguard.policies").joinpath(f"{spec}.toml").read_text()
        return _parse(text, spec, "toml"), spec, text
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(BUILTIN_POLICIES)
        raise PolicyError(str(spec), [f"no such policy file, and not a built-in policy ({names})"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(str(path), [f"cannot read: {error}"]) from error
    kind = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "toml"
    return _parse(text, str(path), kind), str(path), text


def _parse(text: str, source: str, kind: str) -> dict[str, Any]:
    if kind == "yaml":
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise PolicyError(source, [f"YAML syntax error: {error}"]) from error
        if not isinstance(data, dict):
            raise PolicyError(source, ["the top level must be a mapping"])
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"TOML syntax error: {error}"]) from error


def _resolve_extends(data: dict[str, Any], source: str, seen: set[str]) -> dict[str, Any]:
    base_spec = data.get("extends")
    if base_spec is None:
        return data | {"__sources__": [source]}
    if source in seen:
        raise PolicyError(source, [f"'extends' forms a cycle through {source}"])
    seen.add(source)
    if not isinstance(base_spec, str):
        raise PolicyError(source, ["'extends' must be a policy name or a file path"])
    if base_spec not in BUILTIN_POLICIES and source not in BUILTIN_POLICIES:
        base_spec = str((Path(source).parent / base_spec).resolve())
    base_raw, base_source, _ = _read(base_spec)
    base = _resolve_extends(base_raw, base_source, seen)
    merged = _merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged["__sources__"] = [*base["__sources__"], source]
    return merged


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; arrays of tables (overrides, private) append; values replace."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif key in ("overrides", "private") and isinstance(value, list):
            out[key] = [*out.get(key, []), *value]
        else:
            out[key] = value
    return out


_KNOWN_KEYS: dict[str, set[str]] = {
    "": {
        "description",
        "profile",
        "pseudonyms",
        "dates",
        "ages",
        "overrides",
        "private",
        "exclude",
        "text",
        "risk",
        "pixels",
        "faces",
        "__sources__",
    },
    "profile": {"options", "add", "drop"},
    "pseudonyms": {"patient_id", "patient_name"},
    "dates": {"shift_min_days", "shift_max_days", "granularity"},
    "ages": {"aggregate_over"},
    "exclude": {"modalities", "sop_classes", "series_descriptions", "study_descriptions", "allow"},
    "text": {"patterns"},
    "overrides": {"attribute", "action", "value", "modality", "sop_class"},
    "private": {"creator", "group", "elements", "action"},
    "risk": {"max_prosecutor", "quasi_identifiers", "population"},
    "pixels": {
        "scan",
        "modalities",
        "engine",
        "reader",
        "redact_all",
        "unknown_text",
        "keep",
        "builtin_keep",
        "spell_labels",
        "margin",
        "passes",
        "min_score",
        "keyframe_interval",
        "layouts",
    },
}


def _line_of(text: str, key: str, table: str = "") -> str:
    """Best-effort 'line N' for a key in the policy text (TOML or YAML)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\[?\s*([\w.-]+)\s*\]?\]", line)
        if header:
            current = header.group(1)
            continue
        if (not table or current == table) and re.match(rf"\s*{re.escape(key)}\s*[=:]", line):
            return f"line {number}: "
    return ""


def _build(data: dict[str, Any], source: str, text: str, problems: list[str]) -> Policy:
    def bad(key: str, table: str, message: str) -> None:
        where = _line_of(text, key, table)
        problems.append(f"{where}{table + '.' if table else ''}{key}: {message}")

    for table, keys in _KNOWN_KEYS.items():
        section = data if not table else data.get(table, {})
        items = section if isinstance(section, list) else [section]
        for item in items:
            if not isinstance(item, dict):
                bad(table, "", "must be a table")
                continue
            for key in item:
                if key not in keys and not (table == "" and key in _KNOWN_KEYS):
                    bad(
                        key,
                        table,
                        f"unknown key (known: {', '.join(sorted(keys - {'__sources__'}))})",
                    )

    profile = data.get("profile", {})
    options: set[Option] = set()
    for field_name in ("options", "add"):
        for name in profile.get(field_name, []):
            try:
                options.add(Option.parse(name))
            except ValueError as error:
                bad(field_name, "profile", str(error))
    for name in profile.get("drop", []):
        try:
            options.discard(Option.parse(name))
        except ValueError as error:
            bad("drop", "profile", str(error))
    if {
        Option.RETAIN_LONGITUDINAL_FULL_DATES,
        Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    } <= options:
        bad(
            "options",
            "profile",
            "choose one of retain-longitudinal-full-dates and retain-longitudinal-modified-dates",
        )

    pseudo_raw = data.get("pseudonyms", {})
    pseudonyms = Pseudonyms(
        **{k: str(v) for k, v in pseudo_raw.items() if k in ("patient_id", "patient_name")}
    )
    for problem in pseudonyms.validate():
        bad(problem.split(":")[0].split(".")[1], "pseudonyms", problem.split(": ", 1)[1])

    dates_raw = data.get("dates", {})
    dates = Dates()
    try:
        granularity = Granularity(dates_raw.get("granularity", "day"))
    except ValueError:
        bad("granularity", "dates", "must be 'day' or 'year'")
        granularity = Granularity.DAY
    lo, hi = (
        dates_raw.get("shift_min_days", dates.shift_min_days),
        dates_raw.get("shift_max_days", dates.shift_max_days),
    )
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi <= 36500):
        bad(
            "shift_min_days",
            "dates",
            "shift_min_days and shift_max_days must be integers with 0 <= min <= max <= 36500",
        )
        lo, hi = dates.shift_min_days, dates.shift_max_days
    dates = Dates(lo, hi, granularity)

    ages_raw = data.get("ages", {})
    over = ages_raw.get("aggregate_over", 89)
    if over is not None and not (isinstance(over, int) and 0 < over < 150):
        bad("aggregate_over", "ages", "must be an integer age in years (or absent)")
        over = 89
    ages = Ages(over)

    overrides = []
    for item in data.get("overrides", []):
        if not isinstance(item, dict):
            continue
        try:
            path = parse_tag_path(str(item.get("attribute", "")))
        except ValueError as error:
            bad("attribute", "overrides", str(error))
            continue
        try:
            action = OverrideAction(item.get("action"))
        except ValueError:
            bad(
                "action",
                "overrides",
                f"{item.get('action')!r} is not one of "
                + ", ".join(a.value for a in OverrideAction),
            )
            continue
        if action is OverrideAction.REPLACE and "value" not in item:
            bad("action", "overrides", f"replace needs a 'value' ({item.get('attribute')})")
        overrides.append(
            Override(
                path,
                action,
                str(item.get("value", "")),
                str(item.get("modality", "")),
                str(item.get("sop_class", "")),
                str(item.get("attribute")),
            )
        )

    private_rules = []
    for item in data.get("private", []):
        if not isinstance(item, dict):
            continue
        creator, group = item.get("creator"), str(item.get("group", ""))
        if not creator or not re.fullmatch(r"[0-9a-fA-F]{4}", group) or int(group, 16) % 2 == 0:
            bad("creator", "private", "needs 'creator' and an odd 4-hex-digit 'group'")
            continue
        elements = item.get("elements", "*")
        try:
            offsets = (
                frozenset()
                if elements == "*"
                else frozenset(int(str(e), 16) & 0xFF for e in elements)
            )
        except ValueError:
            bad("elements", "private", "must be '*' or a list of 2-hex-digit element offsets")
            continue
        if item.get("action") not in ("keep", "remove"):
            bad("action", "private", "must be 'keep' or 'remove'")
            continue
        private_rules.append(
            PrivateRule(
                str(creator).strip().upper(), int(group, 16), offsets, item["action"] == "keep"
            )
        )

    excl_raw = data.get("exclude", {})
    allow: set[Allowance] = set()
    for name in excl_raw.get("allow", []):
        try:
            allow.add(Allowance(name))
        except ValueError:
            bad(
                "allow",
                "exclude",
                f"{name!r} is not one of " + ", ".join(a.value for a in Allowance),
            )
    patterns = tuple(str(p) for p in excl_raw.get("series_descriptions", []))
    study_patterns = tuple(str(p) for p in excl_raw.get("study_descriptions", []))
    text_patterns = tuple(str(p) for p in data.get("text", {}).get("patterns", []))
    for pattern in (*patterns, *study_patterns, *text_patterns):
        try:
            re.compile(pattern)
        except re.error as error:
            bad("patterns", "", f"bad regular expression {pattern!r}: {error}")
    exclude = Exclusions(
        frozenset(str(m).upper() for m in excl_raw.get("modalities", [])),
        frozenset(str(s) for s in excl_raw.get("sop_classes", [])),
        patterns,
        study_patterns,
        frozenset(allow),
    )
    risk_raw = data.get("risk", {})
    limit = risk_raw.get("max_prosecutor")
    if limit is not None and not (isinstance(limit, int | float) and 0 < limit <= 1):
        bad("max_prosecutor", "risk", "must be a number in (0, 1], e.g. 0.2")
        limit = None
    population = risk_raw.get("population")
    if population is not None and not (isinstance(population, int) and population > 0):
        bad("population", "risk", "must be a positive integer")
        population = None
    risk = RiskLimits(
        float(limit) if limit is not None else None,
        tuple(str(q) for q in risk_raw.get("quasi_identifiers", [])),
        population,
    )
    pixels = _pixels(data.get("pixels", {}), bad)
    digest = hashlib.sha256(repr(sorted(_canonical(data).items())).encode()).hexdigest()
    return Policy(
        name=source,
        sha256=digest,
        description=str(data.get("description", "")),
        options=frozenset(options),
        overrides=tuple(overrides),
        private_rules=tuple(private_rules),
        pseudonyms=pseudonyms,
        dates=dates,
        ages=ages,
        exclude=exclude,
        text_patterns=text_patterns,
        risk=risk,
        pixels=pixels,
    )


def _pixels(raw: Any, bad: Any) -> PixelPolicy:
    """``[pixels]``: every problem reported through ``bad`` with its line."""
    default = PixelPolicy()
    if not isinstance(raw, dict):
        return default
    values: dict[str, Any] = {}
    for key, kind in (
        ("scan", PixelScan),
        ("engine", PixelEngine),
        ("reader", PixelReader),
        ("unknown_text", UnknownText),
    ):
        if key in raw:
            try:
                values[key] = kind(raw[key])
            except ValueError:
                choices = ", ".join(repr(k.value) for k in kind)
                bad(key, "pixels", f"{raw[key]!r} is not one of {choices}")
    for key in ("redact_all", "builtin_keep", "spell_labels"):
        if key in raw:
            if isinstance(raw[key], bool):
                values[key] = raw[key]
            else:
                bad(key, "pixels", "must be true or false")
    if "modalities" in raw:
        values["modalities"] = frozenset(str(m).upper() for m in raw["modalities"])
    if "keep" in raw:
        keep = tuple(str(p) for p in raw["keep"])
        for pattern in keep:
            try:
                re.compile(pattern)
            except re.error as error:
                bad("keep", "pixels", f"bad regular expression {pattern!r}: {error}")
        values["keep"] = keep
    for key, low, high in (("margin", 0, 64), ("keyframe_interval", 1, 10000)):
        if key in raw:
            value = raw[key]
            if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                values[key] = value
            else:
                bad(key, "pixels", f"must be an integer from {low} to {high}")
    if "min_score" in raw:
        score = raw["min_score"]
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            values["min_score"] = float(score)
        else:
            bad("min_score", "pixels", "must be a number from 0 to 1")
    if "passes" in raw:
        passes = tuple(str(p) for p in raw["passes"])
        unknown = [p for p in passes if p not in PIXEL_PASSES]
        if unknown or not passes:
            bad("passes", "pixels", f"must be a non-empty list of {', '.join(PIXEL_PASSES)}")
        else:
            values["passes"] = passes
    layouts = []
    for item in raw.get("layouts", []):
        layout = _layout(item, bad)
        if layout is not None:
            layouts.append(layout)
    values["layouts"] = tuple(layouts)
    return replace(default, **values)


def _layout(item: Any, bad: Any) -> DeviceLayout | None:
    table = "pixels.layouts"
    if not isinstance(item, dict):
        bad("layouts", "pixels", "each layout must be a table")
        return None
    unknown = set(item) - {"manufacturer", "model", "rows", "columns", "regions"}
    for key in sorted(unknown):
        bad(key, table, "unknown key (known: columns, manufacturer, model, regions, rows)")
    manufacturer, model = item.get("manufacturer"), item.get("model", ".*")
    if not isinstance(manufacturer, str) or not isinstance(model, str):
        bad("manufacturer", table, "needs 'manufacturer' (and optional 'model') patterns")
        return None
    for key, pattern in (("manufacturer", manufacturer), ("model", model)):
        try:
            re.compile(pattern)
        except re.error as error:
            bad(key, table, f"bad regular expression {pattern!r}: {error}")
            return None
    size: dict[str, int | None] = {}
    for key in ("rows", "columns"):
        value = item.get(key)
        if value is not None and not (isinstance(value, int) and value > 0):
            bad(key, table, "must be a positive integer")
            return None
        size[key] = value
    regions = []
    for region in item.get("regions", []):
        ok = (
            isinstance(region, list | tuple)
            and len(region) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in region)
            and region[0] >= 0
            and region[1] >= 0
            and region[2] > 0
            and region[3] > 0
        )
        if not ok:
            bad("regions", table, f"{region!r} is not [x, y, width, height] in pixels")
            return None
        regions.append((int(region[0]), int(region[1]), int(region[2]), int(region[3])))
    if not regions:
        bad("regions", table, "a layout needs at least one region")
        return None
    return DeviceLayout(manufacturer, model, size["rows"], size["columns"], tuple(regions))


def _canonical(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: repr(v) for k, v in data.items() if k != "__sources__"}


def parse_tag_path(text: str) -> tuple[int, ...]:
    """Parse 'Keyword', '(gggg,eeee)', 'ggggeeee' or a '/'-separated path of those."""
    from pydicom.datadict import tag_for_keyword

    if not text:
        raise ValueError("empty attribute")
    tags = []
    for part in text.split("/"):
        part = part.strip()
        match = re.fullmatch(r"\(?([0-9a-fA-F]{4}),?([0-9a-fA-F]{4})\)?", part)
        if match:
            tags.append(int(match.group(1) + match.group(2), 16))
            continue
        tag = tag_for_keyword(part)
        if tag is None:
            raise ValueError(f"{part!r} is neither a DICOM keyword nor a tag like (0008,1030)")
        tags.append(tag)
    return tuple(tags)
