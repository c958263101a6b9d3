"""The gateway's settings: one frozen object loaded from a TOML file and validated once.

Every problem in the file is collected and reported together (unknown keys included, so a typo
never silently disables a setting). The gateway refuses to start without an explicit pseudonym
key file and at least one allowed calling AE title and one destination. Secrets (DICOMweb
passwords and tokens) are never written in the file itself: they are read from a file or an
environment variable named in it. The schema is documented in ``docs/gateway.md``.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError


class GatewayConfigError(RadguardError):
    """A gateway configuration file is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid gateway configuration {source}:\n{listing}")


class DestinationKind(enum.Enum):
    DIMSE = "dimse"  # C-STORE to a DICOM node
    STOWRS = "stowrs"  # STOW-RS to a DICOMweb server
    FOLDER = "folder"  # files in a folder (e.g. a mounted share)


class AuthKind(enum.Enum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, 16 chars
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class TlsSettings:
    """DICOM TLS (PS3.15 B.1): our certificate and key, and the CA that signs the peers'."""

    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False  # server side: demand a certificate signed by ``ca``
    verify_peer: bool = True  # client side: check the server's certificate against ``ca``


@dataclass(frozen=True)
class HttpAuth:
    """DICOMweb authentication; the secret is read when the client is built, never logged."""

    kind: AuthKind = AuthKind.NONE
    username: str = ""
    password_file: Path | None = None
    password_env: str = ""
    token_file: Path | None = None
    token_env: str = ""

    def secret(self) -> str:
        """The password or token (raises when it cannot be read)."""
        file = self.password_file if self.kind == AuthKind.BASIC else self.token_file
        env = self.password_env if self.kind == AuthKind.BASIC else self.token_env
        if file is not None:
            try:
                return file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise RadguardError(
                    f"{file}: cannot read the DICOMweb secret ({error.strerror})"
                ) from error
        if env:
            value = os.environ.get(env)
            if value is None:
                raise RadguardError(f"environment variable {env} (DICOMweb secret) is not set")
            return value
        return ""


@dataclass(frozen=True)
class Destination:
    """Where released studies go. ``recipient`` and ``purpose`` are what the ledger records."""

    name: str
    kind: DestinationKind
    recipient: str
    purpose: str
    address: str = ""  # recipient's address (ledger accounting)
    agreement: str = ""  # data-use agreement reference
    legal_basis: str = ""
    # dimse
    host: str = ""
    port: int = 0
    ae_title: str = ""
    calling_ae_title: str = ""
    tls: TlsSettings | None = None
    # stowrs
    url: str = ""
    auth: HttpAuth = field(default_factory=HttpAuth)
    ca_bundle: Path | None = None
    # folder
    path: Path | None = None
    timeout_s: float = 30.0
    concurrency: int = 4  # studies delivered at once (one association each)


@dataclass(frozen=True)
class RetrySettings:
    """Backoff between delivery attempts: initial * multiplier**n, capped; then dead letter."""

    max_attempts: int = 10
    initial_backoff_s: float = 2.0
    multiplier: float = 2.0
    max_backoff_s: float = 300.0

    def backoff(self, attempts: int) -> float:
        return float(
            min(
                self.max_backoff_s, self.initial_backoff_s * self.multiplier ** max(0, attempts - 1)
            )
        )


@dataclass(frozen=True)
class LedgerSettings:
    """Record every forwarded study in the disclosure ledger (``[ledger]``; optional)."""

    enabled: bool = False
    url: str = ""  # SQLite file or postgresql:// URL; empty: the site ledger
    required: bool = True  # a failed ledger append keeps the study pending (retried)


@dataclass(frozen=True)
class ConsentSettings:
    """The consent gate of the pipeline (``[consent]``; optional): opt-outs for ``purpose``
    are excluded before any pixel is read; with ``require_consent`` only opt-ins pass."""

    purpose: str = ""
    require_consent: bool = False
    registry: Path | None = None  # default: $RADGUARD_HOME/consent.sqlite


@dataclass(frozen=True)
class HttpSettings:
    """The health and metrics endpoint (``/healthz``, ``/metrics``); port 0 disables it."""

    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``radguard serve`` needs; a constructed object is valid."""

    source: str
    ae_title: str
    host: str
    port: int
    allowed_calling_ae_titles: frozenset[str]
    spool: Path
    key_file: Path
    policy: str
    destinations: tuple[Destination, ...]
    quiet_period_s: float = 30.0
    release_interval_s: float = 0.0  # 0: a batch as soon as a study is quiet
    max_prosecutor: float | None = None  # risk limit per release batch (overrides the policy)
    workers: int = 1
    max_associations: int = 16
    verify: bool = True
    tls: TlsSettings | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    consent: ConsentSettings = field(default_factory=ConsentSettings)


_KNOWN: dict[str, set[str]] = {
    "": {"gateway", "tls", "retry", "http", "ledger", "risk", "consent", "destination"},
    "gateway": {
        "ae_title",
        "host",
        "port",
        "allowed_calling_ae_titles",
        "spool",
        "key_file",
        "policy",
        "quiet_period_s",
        "release_interval_s",
        "workers",
        "max_associations",
        "verify",
    },
    "tls": {"cert", "key", "ca", "require_client_cert", "verify_peer"},
    "retry": {"max_attempts", "initial_backoff_s", "multiplier", "max_backoff_s"},
    "http": {"host", "port"},
    "ledger": {"enabled", "url", "required"},
    "risk": {"max_prosecutor"},
    "consent": {"purpose", "require_consent", "registry"},
    "destination": {
        "name",
        "type",
        "recipient",
        "purpose",
        "address",
        "agreement",
        "legal_basis",
        "host",
        "port",
        "ae_title",
        "calling_ae_title",
        "tls",
        "url",
        "auth",
        "username",
        "password_file",
        "password_env",
        "token_file",
        "token_env",
        "ca_bundle",
        "path",
        "timeout_s",
        "concurrency",
    },
}


class _Reader:
    """Typed access to one table, collecting problems instead of stopping at the first."""

    def __init__(self, data: dict[str, Any], table: str, base: Path, problems: list[str]) -> None:
        self.data = data
        self.table = table
        self.base = base
        self.problems = problems

    def bad(self, key: str, message: str) -> None:
        self.problems.append(
            f"{self.table}.{key}: {message}" if self.table else f"{key}: {message}"
        )

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            self.bad(key, "is required")
            return ""
        if not isinstance(value, str):
            self.bad(key, f"must be a string, not {type(value).__name__}")
            return default or ""
        return value

    def integer(self, key: str, default: int | None, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if value is None:
            self.bad(key, "is required")
            return low
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(key, "must be an integer")
            return default if default is not None else low
        if not low <= value <= high:
            self.bad(key, f"must be between {low} and {high}, not {value}")
        return value

    def number(self, key: str, default: float | None, low: float, high: float) -> float:
        value = self.data.get(key, default)
        if value is None:
            self.bad(key, "is required")
            return low
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(key, "must be a number")
            return default if default is not None else low
        if not low <= float(value) <= high:
            self.bad(key, f"must be between {low} and {high}, not {value}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.bad(key, "must be true or false")
            return default
        return value

    def path(self, key: str, required: bool = False) -> Path | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.bad(key, "is required")
            return None
        if not isinstance(value, str) or not value:
            self.bad(key, "must be a path (a non-empty string)")
            return None
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.base / path).resolve()

    def ae_title(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if (value and not _AE_TITLE.match(value)) or value != value.strip():
            self.bad(key, f"{value!r} is not a valid AE title (1-16 characters, no backslash)")
        return value


def load_config(path: str | Path) -> GatewayConfig:
    """Load and validate a gateway TOML file; raise :class:`GatewayConfigError` listing all
    problems."""
    config, problems = _load(Path(path))
    if problems or config is None:
        raise GatewayConfigError(str(path), problems)
    return config


def check_config(path: str | Path) -> list[str]:
    """Every problem of a gateway configuration file (empty when it is valid)."""
    return _load(Path(path))[1]


def _load(path: Path) -> tuple[GatewayConfig | None, list[str]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ["no such file"]
    except (OSError, UnicodeDecodeError) as error:
        return None, [f"cannot read: {error}"]
    except tomllib.TOMLDecodeError as error:
        return None, [f"TOML syntax error: {error}"]
    problems: list[str] = []
    base = path.resolve().parent
    _unknown_keys(data, problems)
    if not isinstance(data.get("gateway"), dict):
        problems.append("[gateway]: the section is required")
        return None, problems
    g = _Reader(data["gateway"], "gateway", base, problems)
    ae_title = g.ae_title("ae_title", "RADGUARD")
    host = g.text("host", "0.0.0.0")
    port = g.integer("port", None, 1, 65535)
    allowed = data["gateway"].get("allowed_calling_ae_titles")
    titles: frozenset[str] = frozenset()
    if not isinstance(allowed, list) or not allowed:
        g.bad(
            "allowed_calling_ae_titles",
            "is required: a non-empty list of the AE titles allowed to send "
            "(associations from any other calling AE title are rejected)",
        )
    else:
        for title in allowed:
            if not isinstance(title, str) or not _AE_TITLE.match(title):
                g.bad("allowed_calling_ae_titles", f"{title!r} is not a valid AE title")
        titles = frozenset(t for t in allowed if isinstance(t, str))
    spool = g.path("spool", required=True)
    key_file = g.path("key_file")
    if key_file is None and "key_file" not in data["gateway"]:
        g.bad(
            "key_file",
            "is required: the gateway never uses a default key; create one with "
            "'radguard key new --out FILE' and name it here",
        )
    policy = g.text("policy", "research")
    quiet = g.number("quiet_period_s", 30.0, 0.05, 86400.0)
    interval = g.number("release_interval_s", 0.0, 0.0, 7 * 86400.0)
    workers = g.integer("workers", 1, 1, 256)
    max_assoc = g.integer("max_associations", 16, 1, 1024)
    verify = g.flag("verify", True)
    risk = data.get("risk", {})
    max_prosecutor: float | None = None
    if isinstance(risk, dict) and "max_prosecutor" in risk:
        max_prosecutor = _Reader(risk, "risk", base, problems).number("max_prosecutor", None, 0, 1)
        if max_prosecutor == 0:
            problems.append("risk.max_prosecutor: must be above 0")
    tls = _tls(data.get("tls"), "tls", base, problems)
    retry = _retry(data.get("retry", {}), base, problems)
    http = HttpSettings()
    if isinstance(data.get("http"), dict):
        h = _Reader(data["http"], "http", base, problems)
        http = HttpSettings(h.text("host", "127.0.0.1"), h.integer("port", 0, 0, 65535))
    ledger = LedgerSettings()
    if isinstance(data.get("ledger"), dict):
        r = _Reader(data["ledger"], "ledger", base, problems)
        url = r.text("url", "")
        if url and "://" not in url and not Path(url).is_absolute():
            url = str((base / url).resolve())
        ledger = LedgerSettings(r.flag("enabled", True), url, r.flag("required", True))
    destinations = _destinations(data.get("destination"), ae_title, base, problems)
    consent = ConsentSettings()
    if isinstance(data.get("consent"), dict):
        r = _Reader(data["consent"], "consent", base, problems)
        consent = ConsentSettings(
            r.text("purpose"), r.flag("require_consent", False), r.path("registry")
        )
        for destination in destinations:
            if destination.purpose != consent.purpose:
                problems.append(
                    f"destination {destination.name!r}: purpose {destination.purpose!r} differs "
                    f"from consent.purpose {consent.purpose!r} (consent is checked for one "
                    "purpose; run one gateway per purpose)"
                )
    if policy not in ("basic", "research", "safe-harbor"):
        resolved = Path(policy) if Path(policy).is_absolute() else base / policy
        policy = str(resolved)
    if problems or spool is None or key_file is None:
        return None, problems
    return (
        GatewayConfig(
            source=str(path),
            ae_title=ae_title,
            host=host,
            port=port,
            allowed_calling_ae_titles=titles,
            spool=spool,
            key_file=key_file,
            policy=policy,
            destinations=destinations,
            quiet_period_s=quiet,
            release_interval_s=interval,
            max_prosecutor=max_prosecutor,
            workers=workers,
            max_associations=max_assoc,
            verify=verify,
            tls=tls,
            retry=retry,
            http=http,
            ledger=ledger,
            consent=consent,
        ),
        problems,
    )


def _unknown_keys(data: dict[str, Any], problems: list[str]) -> None:
    for key in data:
        if key not in _KNOWN[""]:
            problems.append(f"{key}: unknown section (known: {', '.join(sorted(_KNOWN['']))})")
    for table, keys in _KNOWN.items():
        if not table or table not in data:
            continue
        section = data[table]
        items = section if isinstance(section, list) else [section]
        for item in items:
            if not isinstance(item, dict):
                problems.append(f"[{table}]: must be a table")
                continue
            for key in item:
                if key not in keys:
                    problems.append(
                        f"{table}.{key}: unknown key (known: {', '.join(sorted(keys))})"
                    )


def _tls(data: Any, table: str, base: Path, problems: list[str]) -> TlsSettings | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(f"{table}: must be a table")
        return None
    r = _Reader(data, table, base, problems)
    cert, key, ca = r.path("cert", True), r.path("key", True), r.path("ca")
    require = r.flag("require_client_cert", False)
    verify_peer = r.flag("verify_peer", True)
    for name, value in (("cert", cert), ("key", key), ("ca", ca)):
        if value is not None and not value.is_file():
            r.bad(name, f"{value}: no such file")
    if require and ca is None:
        r.bad("require_client_cert", "needs 'ca' (the CA that signs client certificates)")
    if cert is None or key is None:
        return None
    return TlsSettings(cert, key, ca, require, verify_peer)


def _retry(data: Any, base: Path, problems: list[str]) -> RetrySettings:
    if not isinstance(data, dict):
        problems.append("retry: must be a table")
        return RetrySettings()
    r = _Reader(data, "retry", base, problems)
    return RetrySettings(
        r.integer("max_attempts", 10, 1, 10_000),
        r.number("initial_backoff_s", 2.0, 0.01, 86400.0),
        r.number("multiplier", 2.0, 1.0, 10.0),
        r.number("max_backoff_s", 300.0, 0.01, 7 * 86400.0),
    )


def _destinations(
    data: Any, ae_title: str, base: Path, problems: list[str]
) -> tuple[Destination, ...]:
    if not isinstance(data, list) or not data:
        problems.append(
            "[[destination]]: at least one destination is required (type dimse, stowrs or folder)"
        )
        return ()
    out: list[Destination] = []
    names: set[str] = set()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            continue
        r = _Reader(item, f"destination[{index}]", base, problems)
        name = r.text("name")
        if name and not _NAME.match(name):
            r.bad("name", "letters, digits, '.', '_' and '-' only (it names a folder)")
        if name in names:
            r.bad("name", f"{name!r} is used by two destinations")
        names.add(name)
        try:
            kind = DestinationKind(r.text("type"))
        except ValueError:
            r.bad("type", "must be one of: " + ", ".join(k.value for k in DestinationKind))
            continue
        recipient = r.text("recipient", name)
        purpose = r.text("purpose", "research")
        timeout = r.number("timeout_s", 30.0, 0.1, 3600.0)
        concurrency = r.integer("concurrency", 4, 1, 64)
        address = r.text("address", "")
        agreement = r.text("agreement", "")
        legal_basis = r.text("legal_basis", "")
        if kind == DestinationKind.DIMSE:
            out.append(
                Destination(
                    name,
                    kind,
                    recipient,
                    purpose,
                    host=r.text("host"),
                    port=r.integer("port", None, 1, 65535),
                    ae_title=r.ae_title("ae_title"),
                    calling_ae_title=r.ae_title("calling_ae_title", ae_title),
                    tls=_tls(item.get("tls"), f"destination[{index}].tls", base, problems),
                    timeout_s=timeout,
                    concurrency=concurrency,
                    address=address,
                    agreement=agreement,
                    legal_basis=legal_basis,
                )
            )
        elif kind == DestinationKind.STOWRS:
            url = r.text("url")
            if url and not url.startswith(("http://", "https://")):
                r.bad("url", "must start with http:// or https://")
            try:
                auth_kind = AuthKind(r.text("auth", "none"))
            except ValueError:
                r.bad("auth", "must be none, basic or bearer")
                auth_kind = AuthKind.NONE
            auth = HttpAuth(
                auth_kind,
                r.text("username", ""),
                r.path("password_file"),
                r.text("password_env", ""),
                r.path("token_file"),
                r.text("token_env", ""),
            )
            if auth_kind == AuthKind.BASIC and not (
                auth.username and (auth.password_file or auth.password_env)
            ):
                r.bad("auth", "basic needs username and password_file or password_env")
            if auth_kind == AuthKind.BEARER and not (auth.token_file or auth.token_env):
                r.bad("auth", "bearer needs token_file or token_env")
            out.append(
                Destination(
                    name,
                    kind,
                    recipient,
                    purpose,
                    url=url.rstrip("/"),
                    auth=auth,
                    ca_bundle=r.path("ca_bundle"),
                    timeout_s=timeout,
                    concurrency=concurrency,
                    address=address,
                    agreement=agreement,
                    legal_basis=legal_basis,
                )
            )
        else:
            out.append(
                Destination(
                    name,
                    kind,
                    recipient,
                    purpose,
                    address=address,
                    agreement=agreement,
                    legal_basis=legal_basis,
                    path=r.path("path", True),
                    concurrency=concurrency,
                )
            )
    return tuple(out)
