"""The secret pseudonym key: creation, loading, derived sub-keys and a printable fingerprint.

The key never appears in logs, errors or run records: only its fingerprint does. A new key is a
new pseudonym space; keys are not rotated in place (see docs/keys.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from radguard.errors import KeyFileError

_HEADER = "radguard-pseudonym-key-v1"
KEY_BYTES = 32


def default_key_path() -> Path:
    """``$RADGUARD_HOME/pseudonym.key``, else ``$XDG_CONFIG_HOME/radguard/pseudonym.key``."""
    home = os.environ.get("RADGUARD_HOME")
    if home:
        return Path(home) / "pseudonym.key"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "radguard" / "pseudonym.key"


def new_key_file(path: Path) -> Path:
    """Write a fresh random key to ``path`` (mode 0600); refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    material = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise KeyFileError(
            f"{path}: a key file already exists; radguard never overwrites "
            "a key (a new key is a new pseudonym space)"
        ) from error
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{_HEADER}\n{material}\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


@dataclass(frozen=True)
class Keyring:
    """The master key and the sub-keys derived from it, one per purpose (domain separation)."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise KeyFileError(f"a pseudonym key must be {KEY_BYTES} bytes")

    def derive(self, purpose: str) -> bytes:
        return hmac.digest(self.secret, b"radguard/" + purpose.encode(), "sha256")

    @property
    def fingerprint(self) -> str:
        """Public identifier of the key (safe to print and record)."""
        return hashlib.sha256(self.derive("fingerprint")).hexdigest()[:16]

    def __reduce__(self) -> tuple[type[Keyring], tuple[bytes]]:
        return (Keyring, (self.secret,))


def load_key(path: Path) -> Keyring:
    """Read a key file; refuse files that others can read."""
    try:
        info = path.stat()
    except FileNotFoundError as error:
        raise KeyFileError(
            f"{path}: no such key file (create one with 'radguard key new --out {path}')"
        ) from error
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: key file is accessible to other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run 'chmod 600 {path}'"
        )
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"{path}: cannot read key file ({type(error).__name__})") from error
    if len(lines) != 2 or lines[0] != _HEADER:
        raise KeyFileError(f"{path}: not a radguard pseudonym key file")
    try:
        secret = base64.b64decode(lines[1], validate=True)
    except ValueError as error:
        raise KeyFileError(f"{path}: key material is not valid base64") from error
    return Keyring(secret)


def load_or_create_default() -> tuple[Keyring, Path, bool]:
    """The user's default key, created on first use. Returns (keyring, path, created)."""
    path = default_key_path()
    created = False
    if not path.exists():
        new_key_file(path)
        created = True
    return load_key(path), path, created
