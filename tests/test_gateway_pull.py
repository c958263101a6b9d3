"""radguard pull from a real PACS (Orthanc): DICOMweb (QIDO-RS + WADO-RS, with basic auth) and
DIMSE (C-FIND, then C-GET or C-MOVE). What arrives in OUT must be exactly what
``radguard deid`` releases from the same study, and the verifier must pass."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pydicom
import pytest

from radguard.deid.keys import load_key, new_key_file
from radguard.gateway import PullSource, Retrieve, SourceKind, pull
from radguard.phantom import generate
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy
from test_gateway_support import Orthanc, dicom_files, free_port, radguard

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("RADGUARD_PHANTOM_SEED") or random.randrange(1 << 31))
USERS = {"reader": "pacs-pw"}
POLICY = "basic"  # no OCR: these tests are about fetching; test_gateway.py runs research


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A PACS holding one phantom patient; the expected release per study."""
    print(f"phantom seed {SEED} (replay: RADGUARD_PHANTOM_SEED={SEED})")
    root = tmp_path_factory.mktemp("pull")
    orig = root / "studies"
    generate(orig, 1, SEED)
    key = new_key_file(root / "keys" / "pseudonym.key")
    run_deid(RunOptions(orig, root / "expected", workers=1), load_policy(POLICY), load_key(key))
    expected: dict[str, set[str]] = {}
    totals: dict[str, int] = {}
    for text in (root / "expected.run" / "manifest.jsonl").open():
        line = json.loads(text)
        uid = str(pydicom.dcmread(orig / line["input"], stop_before_pixels=True).StudyInstanceUID)
        expected.setdefault(uid, set())
        totals[uid] = totals.get(uid, 0) + 1
        if line["status"] == "released":
            expected[uid].add(Path(line["output"]).stem)
    move_port = free_port()
    server = Orthanc(
        root / "pacs",
        "PACS",
        modalities={"RGPULL": ["RGPULL", "127.0.0.1", move_port]},
        users=USERS,
    ).start()
    server.upload(dicom_files(orig))
    patient_id = str(pydicom.dcmread(dicom_files(orig)[0]).PatientID)
    yield server, key, expected, move_port, patient_id, totals
    server.stop()


def _released(out: Path) -> set[str]:
    return {p.stem for p in out.rglob("*.dcm")}


def test_pull_dicomweb_study_and_query(pacs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, key, expected, _, patient_id, totals = pacs
    study = max(expected, key=lambda uid: len(expected[uid]))
    (tmp_path / "pw").write_text("pacs-pw\n")
    auth = ["--auth", "basic", "--username", "reader", "--password-file", str(tmp_path / "pw")]
    out = tmp_path / "one"
    result = radguard(
        "pull", "--from", "dicomweb", "--url", server.dicomweb, *auth, "--study", study,
        "--key-file", str(key), "--policy", POLICY, str(out),
    )  # fmt: skip
    # exit 1 when the pipeline quarantined some (burned-in text), as for radguard deid
    quarantined = totals[study] - len(expected[study])
    assert result.returncode == (1 if quarantined else 0), result.stdout + result.stderr
    assert _released(out) == expected[study]
    assert f"{totals[study]} instances" in result.stdout
    assert "verifier passed" in result.stdout
    assert not (tmp_path / "one.run" / "pulled").exists()  # originals removed after the run

    # A query: every study of the patient; the quarantined ones make the exit code 1.
    out = tmp_path / "all"
    result = radguard(
        "pull", "--from", "dicomweb", "--url", server.dicomweb, *auth,
        "--query", f"PatientID={patient_id}", "--key-file", str(key), "--policy", POLICY,
        str(out),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the phantom plants burned-in text
    assert _released(out) == set().union(*expected.values())
    assert "pulled 3 study(ies)" in result.stdout

    # Wrong credentials: the PACS refuses, nothing is released, the failure is reported.
    (tmp_path / "bad").write_text("wrong\n")
    result = radguard(
        "pull", "--from", "dicomweb", "--url", server.dicomweb, "--auth", "basic",
        "--username", "reader", "--password-file", str(tmp_path / "bad"),
        "--study", study, "--key-file", str(key), str(tmp_path / "none"),
    )  # fmt: skip
    assert result.returncode == 2 and "HTTP 401" in result.stderr


@pytest.mark.parametrize("retrieve", [Retrieve.GET, Retrieve.MOVE])
def test_pull_dimse(pacs, tmp_path: Path, retrieve: Retrieve) -> None:  # type: ignore[no-untyped-def]
    server, key, expected, move_port, patient_id, _ = pacs
    source = PullSource(
        SourceKind.DIMSE,
        host="127.0.0.1",
        port=server.dicom_port,
        called_ae_title="PACS",
        calling_ae_title="RGPULL",
        retrieve=retrieve,
        move_port=move_port,
    )
    # The smallest study with something to release (the C-FIND query finds it by UID).
    study = min((u for u in expected if expected[u]), key=lambda u: len(expected[u]))
    result = pull(
        source,
        tmp_path / "out",
        study_uids=[],
        query={"PatientID": patient_id, "StudyInstanceUID": study},
        policy=load_policy(POLICY),
        keyring=load_key(key),
    )
    assert result.studies == [study]
    assert not result.failed_studies
    assert _released(tmp_path / "out") == expected[study]
    assert result.verify is not None and result.verify.passed, result.verify.findings[:3]


class _BearerProxy:
    """A small reverse proxy that admits only ``Authorization: Bearer <token>`` and forwards
    to the PACS with its own credentials: the shape of an OAuth-protected DICOMweb front."""

    def __init__(self, upstream: str, token: str, upstream_auth: tuple[str, str]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        class Handler(BaseHTTPRequestHandler):
            def _proxy(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("accept", "content-type")
                }
                answer = requests.request(
                    self.command,
                    upstream + self.path,
                    data=body,
                    headers=headers,
                    auth=upstream_auth,
                    timeout=60,
                )
                self.send_response(answer.status_code)
                for key in ("Content-Type",):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _proxy

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_bearer_token_for_stow_and_pull(pacs, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """STOW-RS (a gateway destination) and QIDO/WADO-RS (pull) with a bearer token."""
    from radguard.gateway import ForwardError
    from radguard.gateway.config import AuthKind, Destination, DestinationKind, HttpAuth
    from radguard.gateway.forward import send_stow

    server, key, expected, _, _, _ = pacs
    proxy = _BearerProxy(server.url, "tok-123", next(iter(USERS.items())))
    try:
        monkeypatch.setenv("RG_TEST_TOKEN", "tok-123")
        destination = Destination(
            "web", DestinationKind.STOWRS, "archive", "research",
            url=f"{proxy.url}/dicom-web", auth=HttpAuth(AuthKind.BEARER, token_env="RG_TEST_TOKEN"),
        )  # fmt: skip
        study = min((u for u in expected if expected[u]), key=lambda u: len(expected[u]))
        out = tmp_path / "out"
        (tmp_path / "token").write_text("tok-123\n")
        result = radguard(
            "pull", "--from", "dicomweb", "--url", f"{proxy.url}/dicom-web", "--auth", "bearer",
            "--token-file", str(tmp_path / "token"), "--study", study, "--key-file", str(key),
            "--policy", POLICY, str(out),
        )  # fmt: skip
        assert _released(out) == expected[study], result.stderr
        files = sorted(out.rglob("*.dcm"))
        send_stow(destination, files)  # the de-identified study back, through the proxy
        held = server.instances()
        assert expected[study] <= set(held)
        monkeypatch.setenv("RG_TEST_TOKEN", "wrong")
        with pytest.raises(ForwardError, match="HTTP 401"):
            send_stow(destination, files)
    finally:
        proxy.server.shutdown()
