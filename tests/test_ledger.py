"""The disclosure ledger: RFC 9162 proofs, signed heads, tamper detection, PostgreSQL writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from radguard.govern import merkle
from radguard.govern.keys import KeyKind, load_signer, new_signing_key, public_keys
from radguard.govern.ledger import Ledger, TreeHead

from conftest import IN_CI

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def test_proofs_match_the_reference_tree() -> None:
    leaves = _leaves(33)

    def subtree(a: int, b: int) -> bytes:
        return merkle.root_of(leaves[a:b])

    for size in range(1, 34):
        root = merkle.root_of(leaves[:size])
        for index in range(size):
            path = merkle.inclusion_proof(subtree, index, size)
            assert len(path) <= (size - 1).bit_length()
            assert merkle.verify_inclusion(leaves[index], index, size, path, root)
            other = leaves[(index + 1) % size]
            if size > 1:
                assert not merkle.verify_inclusion(other, index, size, path, root)
        for first in range(size + 1):
            proof = merkle.consistency_proof(subtree, first, size)
            old = merkle.root_of(leaves[:first])
            assert merkle.verify_consistency(first, size, old, root, proof)
            if 0 < first < size:
                assert not merkle.verify_consistency(first, size, leaves[0] * 1, root[::-1], proof)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    # a leaf whose bytes are two hashes must not collide with the node over them
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = Path(os.environ["RADGUARD_HOME"])
    new_signing_key(KeyKind.LEDGER)
    return folder


def _ledger(path: Path | str) -> Ledger:
    return Ledger.open(path, load_signer(KeyKind.LEDGER), public_keys(KeyKind.LEDGER))


def _entry(i: int) -> dict[str, object]:
    return {
        "recipient": {"name": f"Lab {i}", "address": "x"},
        "purpose": "research",
        "patients": [{"patient": f"{i:032x}", "studies": [f"2.25.{i}"]}],
    }


def test_append_verify_and_prove(home: Path, tmp_path: Path) -> None:
    with _ledger(tmp_path / "l.sqlite") as ledger:
        for i in range(9):
            ledger.append(_entry(i))
        ledger.append_many([_entry(9), _entry(10)])
        check = ledger.verify()
        assert check.ok, check.problems
        assert check.size == 11 and check.heads_checked == 10
        head = ledger.latest_head()
        assert head is not None and head.size == 11
        for index in range(11):
            assert ledger.prove_entry(index)["included"]
        old = {h.size: h for h in ledger.heads()}[5]
        proof = ledger.consistency_proof(5, 11)
        assert merkle.verify_consistency(5, 11, old.root, head.root, proof)
        assert len(proof) <= 2 * 4


def _reopen_verify(path: Path, against: TreeHead | None = None) -> tuple[bool, int | None]:
    with Ledger.open(path, None, public_keys(KeyKind.LEDGER)) as ledger:
        check = ledger.verify(against)
    return check.ok, check.first_bad


def _flip(value: object, position: int) -> object:
    if isinstance(value, bytes):
        data = bytearray(value)
        data[position] ^= 0x01
        return bytes(data)
    text = str(value)
    char = "0" if text[position] != "0" else "1"
    return text[:position] + char + text[position + 1 :]


def test_every_change_to_a_small_ledger_is_detected(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with _ledger(path) as ledger:
        for i in range(5):
            ledger.append(_entry(i))
        saved = ledger.latest_head()
    assert saved is not None
    assert _reopen_verify(path) == (True, None)
    db = sqlite3.connect(path, isolation_level=None)
    tried = 0
    # every byte of every stored entry: detected, and located at that entry
    for idx, data in db.execute("SELECT idx, data FROM rg_entries").fetchall():
        for position in range(len(data)):
            db.execute("UPDATE rg_entries SET data = ? WHERE idx = ?", (_flip(data, position), idx))
            ok, first_bad = _reopen_verify(path)
            assert not ok and first_bad == idx, (idx, position)
            tried += 1
        db.execute("UPDATE rg_entries SET data = ? WHERE idx = ?", (data, idx))
    # every byte of every stored hash (leaves and interior nodes)
    for level, idx, value in db.execute("SELECT level, idx, hash FROM rg_nodes").fetchall():
        for position in range(len(value)):
            db.execute(
                "UPDATE rg_nodes SET hash = ? WHERE level = ? AND idx = ?",
                (_flip(value, position), level, idx),
            )
            assert not _reopen_verify(path)[0], (level, idx, position)
            tried += 1
        db.execute("UPDATE rg_nodes SET hash = ? WHERE level = ? AND idx = ?", (value, level, idx))
    # every field of every signed head
    for row in db.execute("SELECT size, root, time, key_id, signature FROM rg_heads").fetchall():
        size = row[0]
        for column, value in zip(("root", "time", "key_id", "signature"), row[1:], strict=True):
            for position in range(len(value)):
                db.execute(
                    f"UPDATE rg_heads SET {column} = ? WHERE size = ?",
                    (_flip(value, position), size),
                )
                assert not _reopen_verify(path)[0], (size, column, position)
                tried += 1
            db.execute(f"UPDATE rg_heads SET {column} = ? WHERE size = ?", (value, size))
        db.execute("UPDATE rg_heads SET size = ? WHERE size = ?", (size + 100, size))
        assert not _reopen_verify(path)[0]
        db.execute("UPDATE rg_heads SET size = ? WHERE size = ?", (size, size + 100))
    assert _reopen_verify(path) == (True, None)
    # removing any entry, or reordering two, is reported at the first entry affected
    rows = db.execute("SELECT idx, data FROM rg_entries ORDER BY idx").fetchall()
    for idx, data in rows:
        db.execute("DELETE FROM rg_entries WHERE idx = ?", (idx,))
        ok, first_bad = _reopen_verify(path)
        assert not ok and first_bad == idx
        db.execute("INSERT INTO rg_entries VALUES (?, ?)", (idx, data))
    db.execute("UPDATE rg_entries SET data = ? WHERE idx = 1", (rows[2][1],))
    db.execute("UPDATE rg_entries SET data = ? WHERE idx = 2", (rows[1][1],))
    ok, first_bad = _reopen_verify(path)
    assert not ok and first_bad == 1
    db.execute("UPDATE rg_entries SET data = ? WHERE idx = 1", (rows[1][1],))
    db.execute("UPDATE rg_entries SET data = ? WHERE idx = 2", (rows[2][1],))
    assert _reopen_verify(path) == (True, None)
    # truncation together with its heads: caught against a head kept elsewhere
    db.execute("DELETE FROM rg_entries WHERE idx = 4")
    db.execute("DELETE FROM rg_nodes WHERE idx >= 4 AND level = 0")
    db.execute("DELETE FROM rg_heads WHERE size = 5")
    assert _reopen_verify(path)[0]  # self-consistent without a witness ...
    ok, first_bad = _reopen_verify(path, saved)  # ... but not against the saved head
    assert not ok and first_bad == 4
    db.close()
    assert tried > 2000


def test_a_replaced_key_is_refused_when_keys_are_pinned(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with _ledger(path) as ledger:
        ledger.append(_entry(0))
    pinned = public_keys(KeyKind.LEDGER)
    other = tmp_path / "other"
    new_signing_key(KeyKind.LEDGER, other)
    # an attacker rewrites entry 0 and signs a head with their own key
    with Ledger.open(path, load_signer(KeyKind.LEDGER, other), None) as forged:
        forged.store.execute("DELETE FROM rg_entries")
        forged.store.execute("DELETE FROM rg_nodes")
        forged.store.execute("DELETE FROM rg_heads")
        forged._cache = None
        forged.append(_entry(99))
        assert forged.verify().ok  # consistent with the key stored in the ledger itself ...
    with Ledger.open(path, None, pinned) as ledger:
        check = ledger.verify()  # ... but not with the site's pinned key
    assert not check.ok and any("unknown key" in p for p in check.problems)


def test_rotation_keeps_old_heads_verifiable(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with _ledger(path) as ledger:
        ledger.append(_entry(0))
    old = load_signer(KeyKind.LEDGER).key_id
    new_signing_key(KeyKind.LEDGER, rotate=True)
    assert load_signer(KeyKind.LEDGER).key_id != old
    assert not (Path(os.environ["RADGUARD_HOME"]) / "keys/ledger" / f"{old}.key.pem").exists()
    with _ledger(path) as ledger:
        ledger.append(_entry(1))
        check = ledger.verify()
    assert check.ok and check.heads_checked == 2
    assert {h.key_id for h in Ledger.open(path).heads()} == set(public_keys(KeyKind.LEDGER))


def test_cli_verify_reports_the_first_bad_entry(home: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from radguard.cli import main

    path = tmp_path / "l.sqlite"
    with _ledger(path) as ledger:
        for i in range(4):
            ledger.append(_entry(i))
    runner = CliRunner()
    result = runner.invoke(main, ["ledger", "verify", "--ledger", str(path)])
    assert result.exit_code == 0, result.output
    proof = runner.invoke(main, ["ledger", "consistency", "2", "--ledger", str(path)])
    data = json.loads(proof.output)
    assert proof.exit_code == 0 and data["valid"] and data["first"]["signed"]
    assert data["second"]["size"] == 4 and data["second"]["signed"]
    head = runner.invoke(main, ["ledger", "head", "--ledger", str(path)])
    (tmp_path / "head.json").write_text(head.output)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE rg_entries SET data = replace(data, 'Lab 2', 'Lab X') WHERE idx = 2")
    result = runner.invoke(
        main, ["ledger", "verify", "--ledger", str(path), "--head", str(tmp_path / "head.json")]
    )
    assert result.exit_code == 1
    assert "first bad entry: 2" in result.output
    proof = runner.invoke(main, ["ledger", "prove", "1", "--ledger", str(path)])
    assert json.loads(proof.output)["included"]


# ---- PostgreSQL ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL 15 server on a free loopback port (as 'postgres' when root)."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        if IN_CI:
            pytest.fail("PostgreSQL 15 (initdb, pg_ctl) is required in CI")
        pytest.skip("PostgreSQL 15 not installed")
    root = Path(tempfile.mkdtemp(prefix="rg-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(root, 0o700)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = subprocess.run
    run(
        [
            *prefix,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "rg",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        [
            *prefix,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://rg@127.0.0.1:{port}/postgres"
    finally:
        run(
            [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _writer(args: tuple[str, str, int, int]) -> list[int]:
    url, home, worker, count = args
    os.environ["RADGUARD_HOME"] = home
    indices = []
    with _ledger(url) as ledger:
        for i in range(count):
            indices.append(ledger.append(_entry(worker * 1000 + i)).index)
    return indices


def test_postgres_concurrent_writers_keep_one_consistent_log(home: Path, postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS rgtest")
        conn.execute("CREATE DATABASE rgtest")
    url = postgres_url.rsplit("/", 1)[0] + "/rgtest"
    workers, each = 4, 15
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_writer, [(url, str(home), w, each) for w in range(workers)])
    indices = sorted(i for r in results for i in r)
    assert indices == list(range(workers * each))
    with Ledger.open(url, None, public_keys(KeyKind.LEDGER)) as ledger:
        check = ledger.verify()
        assert check.ok, check.problems
        assert check.size == workers * each and check.heads_checked == workers * each
        assert ledger.prove_entry(17)["included"]
        names = {e["recipient"]["name"] for _, e in ledger.entries()}
        assert len(names) == workers * each
        from radguard.deid.keys import Keyring
        from radguard.govern import record_forward
        from radguard.govern.account import account

        keyring = Keyring(bytes(range(32)))
        ledger.signer = load_signer(KeyKind.LEDGER)
        record_forward(
            ledger,
            keyring,
            recipient="Gateway B",
            purpose="research",
            patient_id="PG-PATIENT",
            study_uids=["2.25.77"],
            files=2,
        )
        assert [r.recipient for r in account(ledger, keyring, "PG-PATIENT")] == ["Gateway B"]
        ledger.store.execute(
            "UPDATE rg_entries SET data = replace(data, 'Lab', 'Bal') WHERE idx = 7"
        )
        check = ledger.verify()
    assert not check.ok and check.first_bad == 7


def test_public_api_names_import() -> None:
    import radguard.govern as govern

    for name in govern.__all__:
        assert getattr(govern, name) is not None, name


def test_record_forward_is_accounted(home: Path, tmp_path: Path, keyring: object) -> None:
    from radguard.deid.keys import Keyring
    from radguard.govern import record_forward
    from radguard.govern.account import account

    assert isinstance(keyring, Keyring)
    path = tmp_path / "l.sqlite"
    with _ledger(path) as ledger:
        receipt = record_forward(
            ledger,
            keyring,
            recipient="Remote PACS",
            address="dicom://pacs.example:11112",
            purpose="research",
            patient_id="MRN-42",
            study_uids=["2.25.1234"],
            files=3,
            modalities={"CT": 3},
        )
        assert receipt.index == 0 and receipt.head.size == 1
        rows = account(ledger, keyring, "MRN-42")
        assert [(r.recipient, r.studies) for r in rows] == [("Remote PACS", 1)]
        assert rows[0].description.startswith("1 study(ies) of this patient, in a release of")
        assert account(ledger, keyring, "MRN-43") == []
        assert b"MRN-42" not in path.read_bytes()


def test_sqlite_concurrent_writers_keep_one_consistent_log(home: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    Ledger.open(path).close()
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_writer, [(path, str(home), w, 8) for w in range(3)])
    assert sorted(i for r in results for i in r) == list(range(24))
    with Ledger.open(path, None, public_keys(KeyKind.LEDGER)) as ledger:
        check = ledger.verify()
    assert check.ok and check.size == 24 and check.heads_checked == 24
