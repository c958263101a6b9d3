"""The disclosure ledger: an append-only, tamper-evident Merkle log of releases.

Every entry is canonical JSON (sorted keys, no spaces, ASCII) holding the release's recipient,
purpose, legal basis, manifest digest and, per patient, a keyed hash of the original Patient ID
with the released (de-identified) study UIDs; nothing in it identifies a patient in the clear.
Each entry also records ``seq`` (its index) and ``prev_root`` (the tree root before it), so a
verifier finds the first entry that was changed, removed or reordered. After every append a
tree head (size, root, time, key id, log id) is signed with the site's Ed25519 ledger key.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError
from radguard.govern import merkle
from radguard.govern.keys import Signer, key_id_of, load_public, verify_signature
from radguard.govern.store import Store

FORMAT = "radguard-ledger/1"


class LedgerTampered(RadguardError):
    """The ledger does not verify: something was changed, removed or reordered."""


def canonical(value: Any) -> bytes:
    """The one byte encoding of a JSON value that is hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class TreeHead:
    """A signed statement: the log ``log_id`` had ``size`` entries with root ``root``."""

    log_id: str
    size: int
    root: bytes
    time: str
    key_id: str
    signature: bytes = field(repr=False, default=b"")

    def signed_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "key_id": self.key_id,
            "log_id": self.log_id,
            "root": self.root.hex(),
            "size": self.size,
            "time": self.time,
        }
        return b"radguard tree head\n" + canonical(body)

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeHead:
        return cls(
            str(data["log_id"]),
            int(data["size"]),
            bytes.fromhex(data["root"]),
            str(data["time"]),
            str(data["key_id"]),
            bytes.fromhex(data["signature"]),
        )


@dataclass
class Receipt:
    """What an append returns: the entry's index and leaf hash and the new signed head."""

    index: int
    leaf: bytes
    head: TreeHead


@dataclass
class LedgerCheck:
    """Outcome of ``Ledger.verify``."""

    ok: bool
    size: int
    heads_checked: int
    first_bad: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    root: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "heads_checked": self.heads_checked,
            "first_bad_entry": self.first_bad,
            "problems": self.problems,
            "notes": self.notes,
            "root": self.root,
        }


class Ledger:
    """One ledger database. ``signer`` is needed to append; ``trusted`` pins verification keys."""

    def __init__(
        self,
        store: Store,
        signer: Signer | None = None,
        trusted: dict[str, bytes] | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.trusted = trusted
        self._cache: tuple[int, list[tuple[int, int, bytes]]] | None = None
        self._key_recorded = False
        self.log_id = self._log_id()

    @classmethod
    def open(
        cls,
        where: str | Path,
        signer: Signer | None = None,
        trusted: dict[str, bytes] | None = None,
    ) -> Ledger:
        return cls(Store.open(where), signer, trusted)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log_id(self) -> str:
        with self.store.write() as s:
            row = s.one("SELECT value FROM rg_meta WHERE name = 'log_id'")
            if row:
                return str(row[0])
            log_id = secrets.token_hex(16)
            s.execute("INSERT INTO rg_meta (name, value) VALUES ('log_id', ?)", (log_id,))
            s.execute("INSERT INTO rg_meta (name, value) VALUES ('format', ?)", (FORMAT,))
            return log_id

    # ---- reading -------------------------------------------------------------------------
    @property
    def size(self) -> int:
        row = self.store.one("SELECT MAX(idx) FROM rg_entries")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def entry(self, index: int) -> dict[str, Any]:
        row = self.store.one("SELECT data FROM rg_entries WHERE idx = ?", (index,))
        if row is None:
            raise RadguardError(f"the ledger has no entry {index}")
        value: dict[str, Any] = json.loads(row[0])
        return value

    def entries(self, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        for idx, data in self.store.stream(
            "SELECT idx, data FROM rg_entries WHERE idx >= ? ORDER BY idx", (start,)
        ):
            yield int(idx), json.loads(data)

    def search(self, needle: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """Entries whose JSON contains ``needle`` (a hex hash): a prefilter, callers re-check."""
        for idx, data in self.store.stream(
            "SELECT idx, data FROM rg_entries WHERE data LIKE ? ORDER BY idx", (f"%{needle}%",)
        ):
            yield int(idx), json.loads(data)

    def heads(self) -> list[TreeHead]:
        rows = self.store.execute(
            "SELECT size, root, time, key_id, signature FROM rg_heads ORDER BY size"
        ).fetchall()
        return [
            TreeHead(self.log_id, int(r[0]), bytes(r[1]), r[2], r[3], bytes(r[4])) for r in rows
        ]

    def latest_head(self) -> TreeHead | None:
        row = self.store.one(
            "SELECT size, root, time, key_id, signature FROM rg_heads ORDER BY size DESC LIMIT 1"
        )
        if row is None:
            return None
        return TreeHead(self.log_id, int(row[0]), bytes(row[1]), row[2], row[3], bytes(row[4]))

    def _perfect(self, level: int, index: int) -> bytes:
        row = self.store.one(
            "SELECT hash FROM rg_nodes WHERE level = ? AND idx = ?", (level, index)
        )
        if row is None:
            raise LedgerTampered(f"node ({level}, {index}) is missing from the ledger")
        return bytes(row[0])

    def _subtree(self, start: int, end: int) -> bytes:
        return merkle.subtree_hash(self._perfect, start, end)

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return merkle.EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof(self._subtree, index, self.size if size is None else size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(
            self._subtree, first, self.size if second is None else second
        )

    def prove_entry(self, index: int, head: TreeHead | None = None) -> dict[str, Any]:
        """An entry, its leaf hash and its inclusion proof against a signed head (or latest)."""
        head = head or self.latest_head()
        if head is None:
            raise RadguardError("the ledger has no signed head yet")
        row = self.store.one("SELECT data FROM rg_entries WHERE idx = ?", (index,))
        if row is None:
            raise RadguardError(f"the ledger has no entry {index}")
        data = str(row[0]).encode()
        proof = self.inclusion_proof(index, head.size)
        return {
            "index": index,
            "entry": json.loads(data),
            "leaf": merkle.leaf_hash(data).hex(),
            "proof": [p.hex() for p in proof],
            "head": head.to_json(),
            "included": merkle.verify_inclusion(
                merkle.leaf_hash(data), index, head.size, proof, head.root
            ),
        }

    # ---- appending -----------------------------------------------------------------------
    def append(self, entry: dict[str, Any]) -> Receipt:
        """Append one entry and sign the new head (one transaction)."""
        return self.append_many([entry])[-1]

    def append_many(self, entries: Sequence[dict[str, Any]]) -> list[Receipt]:
        """Append entries in order under the write lock; one signed head covers them all."""
        if self.signer is None:
            raise RadguardError("appending to the ledger needs the ledger signing key")
        if not entries:
            raise RadguardError("nothing to append")
        signer = self.signer
        receipts: list[tuple[int, bytes]] = []
        with self.store.write() as s:
            if not self._key_recorded:
                s.execute(
                    "INSERT INTO rg_keys (key_id, public_pem) VALUES (?, ?) "
                    "ON CONFLICT (key_id) DO NOTHING",
                    (signer.key_id, signer.public_pem.decode()),
                )
            size = self.size
            frontier = self._frontier(size)
            for entry in entries:
                body = dict(entry)
                body["seq"] = size
                body["prev_root"] = merkle.fold([h for _, _, h in frontier]).hex()
                body.setdefault("time", now_utc())
                body["format"] = FORMAT
                data = canonical(body)
                leaf = merkle.leaf_hash(data)
                s.execute("INSERT INTO rg_entries (idx, data) VALUES (?, ?)", (size, data.decode()))
                nodes = [(0, size, leaf)]
                level, index, value = 0, size, leaf
                while frontier and frontier[-1][0] == level:
                    _, _, left = frontier.pop()
                    level, index, value = level + 1, index >> 1, merkle.node_hash(left, value)
                    nodes.append((level, index, value))
                frontier.append((level, index, value))
                self._put_nodes(nodes)
                receipts.append((size, leaf))
                size += 1
            root = merkle.fold([h for _, _, h in frontier])
            unsigned = TreeHead(self.log_id, size, root, now_utc(), signer.key_id)
            head = TreeHead(
                unsigned.log_id,
                size,
                root,
                unsigned.time,
                signer.key_id,
                signer.sign(unsigned.signed_bytes()),
            )
            s.execute(
                "INSERT INTO rg_heads (size, root, time, key_id, signature) VALUES (?, ?, ?, ?, ?)",
                (size, head.root, head.time, head.key_id, head.signature),
            )
            self._cache = (size, frontier)
        self._key_recorded = True
        return [Receipt(index, leaf, head) for index, leaf in receipts]

    def _put_nodes(self, nodes: list[tuple[int, int, bytes]]) -> None:
        """One statement for the nodes an entry completes (one round trip on PostgreSQL)."""
        values = ", ".join(["(?, ?, ?)"] * len(nodes))
        flat = tuple(v for node in nodes for v in node)
        self.store.execute(f"INSERT INTO rg_nodes (level, idx, hash) VALUES {values}", flat)

    def _frontier(self, size: int) -> list[tuple[int, int, bytes]]:
        """The right edge of the tree (its perfect subtrees); cached while we are the writer."""
        if self._cache is not None and self._cache[0] == size:
            return list(self._cache[1])
        wanted = merkle.perfect_ranges(size)
        if not wanted:
            return []
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(wanted))
        rows = self.store.execute(
            f"SELECT level, idx, hash FROM rg_nodes WHERE {where}",
            tuple(v for pair in wanted for v in pair),
        ).fetchall()
        found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
        missing = [pair for pair in wanted if pair not in found]
        if missing:
            raise LedgerTampered(f"node {missing[0]} of the tree's right edge is missing")
        return [(lv, ix, found[(lv, ix)]) for lv, ix in wanted]

    # ---- verifying -----------------------------------------------------------------------
    def verify(self, against: TreeHead | None = None) -> LedgerCheck:
        """Recompute the whole log and check it against every signed head.

        Reports the first entry where anything was changed, removed or reordered; a head kept
        elsewhere (``against``, e.g. published by an auditor) also catches a truncated log.
        """
        check = LedgerCheck(ok=False, size=0, heads_checked=0)
        keys = self._trusted_keys(check)
        extra: dict[int, TreeHead] = {}
        if against is not None:
            pem = keys.get(against.key_id)
            if against.log_id != self.log_id:
                check.problems.append("the given head belongs to another log")
            elif pem is None or not verify_signature(
                pem, against.signed_bytes(), against.signature
            ):
                check.problems.append("the given head's signature does not verify")
            else:
                extra[against.size] = against
        stored = self.latest_head()
        latest = max([stored.size if stored else 0, *extra])
        first_bad = self._walk(check, keys, extra)
        if first_bad is None and check.size < latest:
            check.problems.append(
                f"log truncated: a signed head covers {latest} entries, the store holds "
                f"{check.size} (entries {check.size} to {latest - 1} removed)"
            )
            first_bad = check.size
        if first_bad is None and check.size > latest:
            check.problems.append(
                f"entries {latest} to {check.size - 1} are not covered by any signed head"
            )
            first_bad = latest
        check.first_bad = first_bad
        check.ok = not check.problems
        return check

    def _trusted_keys(self, check: LedgerCheck) -> dict[str, bytes]:
        if self.trusted is not None:
            return self.trusted
        check.notes.append(
            "verification keys taken from the ledger itself (not pinned): pass the site's "
            "ledger public keys to rule out a replaced key"
        )
        rows = self.store.execute("SELECT key_id, public_pem FROM rg_keys").fetchall()
        found: dict[str, bytes] = {}
        for key_id, pem in rows:
            if key_id_of(load_public(pem.encode())) == key_id:
                found[key_id] = pem.encode()
            else:
                check.problems.append(f"key table: key {key_id} does not match its public key")
        return found

    def _heads(self, check: LedgerCheck, keys: dict[str, bytes]) -> Iterator[TreeHead]:
        """Stored heads by size, each signature checked as it streams past."""
        for row in self.store.stream(
            "SELECT size, root, time, key_id, signature FROM rg_heads ORDER BY size"
        ):
            head = TreeHead(self.log_id, int(row[0]), bytes(row[1]), row[2], row[3], bytes(row[4]))
            pem = keys.get(head.key_id)
            if pem is None:
                check.problems.append(f"signed head at size {head.size}: unknown key {head.key_id}")
            elif not verify_signature(pem, head.signed_bytes(), head.signature):
                check.problems.append(f"signed head at size {head.size}: signature invalid")
            yield head

    def _walk(
        self, check: LedgerCheck, keys: dict[str, bytes], extra: dict[int, TreeHead]
    ) -> int | None:
        """Stream entries, nodes and heads once; return the first bad entry index (or None)."""
        heads = self._heads(check, keys)
        next_head = next(heads, None)
        nodes = self.store.stream(
            "SELECT level, idx, hash FROM rg_nodes ORDER BY (((idx + 1) * (1 << level)) - 1), level"
        )
        pending = next(nodes, None)
        frontier: list[tuple[int, bytes]] = []
        expected = 0
        last_head = 0

        def node_problem(where: str) -> None:
            check.problems.append(f"stored hash {where} was changed, added or removed")

        for idx, data in self.store.stream("SELECT idx, data FROM rg_entries ORDER BY idx"):
            idx = int(idx)
            if idx != expected:
                check.problems.append(f"entry {expected} was removed (next stored entry is {idx})")
                return expected
            raw = str(data).encode()
            try:
                body = json.loads(raw)
                ok_form = canonical(body) == raw and isinstance(body, dict)
            except ValueError:
                ok_form = False
            leaf = merkle.leaf_hash(raw)
            # nodes completed by this leaf: level 0 and each level while the index is odd
            wanted = [(0, idx, leaf)]
            level, index, value = 0, idx, leaf
            stack = list(frontier)
            while stack and stack[-1][0] == level:
                _, left = stack.pop()
                level, index, value = level + 1, index >> 1, merkle.node_hash(left, value)
                wanted.append((level, index, value))
            for lv, ix, hv in wanted:
                if pending is None or (int(pending[0]), int(pending[1])) != (lv, ix):
                    node_problem(f"of node ({lv}, {ix})")
                    return idx
                if bytes(pending[2]) != hv:
                    what = "content no longer matches its stored hash" if lv == 0 else None
                    if what:
                        check.problems.append(f"entry {idx} was changed: its {what}")
                    else:
                        node_problem(f"of node ({lv}, {ix})")
                    return idx
                pending = next(nodes, None)
            if not ok_form:
                check.problems.append(f"entry {idx} is not in canonical form (edited)")
                return idx
            root_before = merkle.fold([h for _, h in frontier])
            if body.get("seq") != idx:
                check.problems.append(
                    f"entry {idx} carries sequence number {body.get('seq')} (reordered or moved)"
                )
                return idx
            if body.get("prev_root") != root_before.hex():
                bad = idx - 1 if idx else 0
                check.problems.append(
                    f"entry {bad} was changed, removed or reordered (the tree before entry "
                    f"{idx} no longer matches the root it records)"
                )
                return bad
            frontier = [*stack, (level, value)]
            expected = idx + 1
            due: list[TreeHead] = []
            while next_head is not None and next_head.size <= expected:
                due.append(next_head)
                next_head = next(heads, None)
            if expected in extra:
                due.append(extra[expected])
            root = merkle.fold([h for _, h in frontier]) if due else b""
            for head in due:
                check.heads_checked += 1
                if head.size != expected or root != head.root:
                    first = last_head
                    check.problems.append(
                        f"entries {first} to {idx} do not match the signed head at size {expected}"
                        if first != idx
                        else f"entry {idx} does not match the signed head at size {expected}"
                    )
                    return first
                last_head = expected
        for _ in heads:  # heads beyond the stored entries: signatures still checked
            pass
        check.size = expected
        check.root = merkle.fold([h for _, h in frontier]).hex()
        if pending is not None:
            node_problem(f"of node ({pending[0]}, {pending[1]}) (not part of the tree)")
            return expected
        return None
