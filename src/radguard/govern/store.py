"""Ledger storage: SQLite (one embedded file, the default) or PostgreSQL (psycopg 3).

Both hold the same tables; appends run under an exclusive write lock (SQLite ``BEGIN
IMMEDIATE``, a PostgreSQL transaction-scoped advisory lock), so several processes or gateways
can append to one ledger and the log stays a single consistent sequence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError

_LOCK_KEY = 0x7261646775617264  # "radguard": the advisory lock id of the append lock

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rg_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rg_entries (idx BIGINT PRIMARY KEY, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rg_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, "
    "hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS rg_heads (size BIGINT PRIMARY KEY, root {blob} NOT NULL, "
    "time TEXT NOT NULL, key_id TEXT NOT NULL, signature {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rg_keys (key_id TEXT PRIMARY KEY, public_pem TEXT NOT NULL)",
)


class LedgerStoreError(RadguardError):
    """The ledger database cannot be opened or written."""


class Store:
    """A thin layer over a DB-API connection: the few statements the ledger needs."""

    def __init__(self, conn: Any, postgres: bool, where: str) -> None:
        self.conn = conn
        self.postgres = postgres
        self.where = where
        self.p = "%s" if postgres else "?"
        self._cursors = 0

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | Path) -> Store:
        text = str(url)
        if text.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as error:  # pragma: no cover - depends on the install
                raise LedgerStoreError(
                    "a PostgreSQL ledger needs psycopg 3: pip install 'radguard[postgres]'"
                ) from error
            try:
                conn = psycopg.connect(text, autocommit=True)
            except psycopg.Error as error:
                raise LedgerStoreError(
                    f"cannot connect to the PostgreSQL ledger: {type(error).__name__}"
                ) from error
            return cls._ready(cls(conn, True, _redact(text)))
        else:
            path = Path(text.removeprefix("sqlite:///").removeprefix("sqlite://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                lite = sqlite3.connect(path, timeout=120, isolation_level=None)
                lite.execute("PRAGMA journal_mode=WAL")
                lite.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as error:
                raise LedgerStoreError(f"{path}: cannot open the ledger ({error})") from error
            return cls._ready(cls(lite, False, str(path)))

    @classmethod
    def _ready(cls, store: Store) -> Store:
        store._create()
        return store

    def _create(self) -> None:
        blob = "BYTEA" if self.postgres else "BLOB"
        with self.write():
            for statement in _SCHEMA:
                self.execute(statement.format(blob=blob))

    # ---- transactions --------------------------------------------------------------------
    def write(self) -> _Write:
        return _Write(self)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        sql = sql.replace("?", self.p) if self.postgres else sql
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def stream(self, sql: str, params: tuple[Any, ...] = (), batch: int = 5000) -> Iterator[Any]:
        """Rows of a large query without holding them all (a server-side cursor on PostgreSQL)."""
        if self.postgres:
            self._cursors += 1
            name = f"rg_stream_{self._cursors}"
            # WITH HOLD: valid outside a transaction, so several streams can interleave
            with self.conn.cursor(name=name, withhold=True) as cursor:
                cursor.itersize = batch
                cursor.execute(sql.replace("?", "%s"), params)
                yield from cursor
        else:
            cursor = self.conn.execute(sql, params)
            while True:
                rows = cursor.fetchmany(batch)
                if not rows:
                    return
                yield from rows

    def close(self) -> None:
        self.conn.close()


class _Write:
    """The exclusive append transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Store:
        s = self.store
        if s.postgres:
            s.conn.execute("BEGIN")
            s.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        else:
            s.conn.execute("BEGIN IMMEDIATE")
        return s

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        s = self.store
        s.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _redact(url: str) -> str:
    """A connection URL without its password (for messages)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
