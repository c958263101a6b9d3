"""The encrypted mapping vault: original identifier <-> pseudonym, readable only with the key.

One SQLite file per run, beside the output (never inside it). Each row holds the pair encrypted
with AES-GCM under a key derived from the pseudonym key, plus keyed-hash indexes so an honest
broker can look a pseudonym up without the vault holding any identifier in the clear.
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from radguard.deid.keys import Keyring
from radguard.errors import VaultError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mapping (
    kind TEXT NOT NULL,
    original_index BLOB NOT NULL,
    pseudonym_index BLOB NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    UNIQUE (kind, original_index)
);
CREATE INDEX IF NOT EXISTS mapping_pseudonym ON mapping (pseudonym_index);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Vault:
    """Append-and-lookup access to one vault file."""

    def __init__(self, path: Path, keyring: Keyring, *, create: bool = False) -> None:
        if not create and not path.exists():
            raise VaultError(f"{path}: no such vault")
        self.path = path
        self._aead = AESGCM(keyring.derive("vault-encryption"))
        self._index_key = keyring.derive("vault-index")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE name='key'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('key', ?)", (keyring.fingerprint,))
            self._db.commit()
        elif row[0] != keyring.fingerprint:
            raise VaultError(
                f"{path}: this vault was written with another key (fingerprint {row[0]})"
            )

    def _index(self, kind: str, value: str) -> bytes:
        return hmac.digest(self._index_key, f"{kind}\x00{value}".encode(), "sha256")

    def add(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Stage (kind, original, pseudonym) entries; duplicates are ignored.

        Entries become durable at :meth:`commit` (or :meth:`close`): callers batch many files
        into one transaction and record those files as done only after the commit.
        """
        rows = []
        for kind, original, pseudonym in entries:
            nonce = os.urandom(12)
            payload = json.dumps([kind, original, pseudonym]).encode()
            sealed = self._aead.encrypt(nonce, payload, kind.encode())
            rows.append(
                (kind, self._index(kind, original), self._index(kind, pseudonym), nonce, sealed)
            )
        if rows:
            self._db.executemany("INSERT OR IGNORE INTO mapping VALUES (?, ?, ?, ?, ?)", rows)

    def commit(self) -> None:
        self._db.commit()

    def lookup(
        self, value: str, *, kind: str | None = None, reverse: bool = False
    ) -> list[tuple[str, str, str]]:
        """Entries whose pseudonym (or, with ``reverse``, original) is ``value``."""
        column = "original_index" if reverse else "pseudonym_index"
        kinds = (
            [kind]
            if kind
            else [k for (k,) in self._db.execute("SELECT DISTINCT kind FROM mapping")]
        )
        found = []
        for k in kinds:
            for nonce, sealed in self._db.execute(
                f"SELECT nonce, sealed FROM mapping WHERE kind=? AND {column}=?",
                (k, self._index(k, value)),
            ):
                try:
                    entry = json.loads(self._aead.decrypt(nonce, sealed, k.encode()))
                except InvalidTag as error:
                    raise VaultError(
                        f"{self.path}: entry fails authentication (wrong key or tampered vault)"
                    ) from error
                found.append((entry[0], entry[1], entry[2]))
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM mapping").fetchone()[0])

    def close(self) -> None:
        self._db.commit()
        self._db.close()
