"""The gateway end to end, with real components: dcmtk's storescu as the modality, radguard serve
as a real process, Orthanc (with DICOMweb) as the research archive.

A fresh phantom seed each run (RADGUARD_PHANTOM_SEED replays one). What must arrive is what
``radguard deid`` releases from the same originals with the same key: SOP Instance UIDs are
deterministic, so the archive must hold exactly that set, once each.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests

from radguard.deid.keys import load_key, new_key_file
from radguard.phantom import generate
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy
from radguard.verify import verify
from test_gateway_support import (
    Orthanc,
    Serve,
    dicom_files,
    free_port,
    radguard,
    storescu,
    wait_for,
    write_config,
)

from conftest import require_tool

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("RADGUARD_PHANTOM_SEED") or random.randrange(1 << 31))


@dataclass
class Phantom:
    orig: Path
    key: Path
    policy: str
    expected: set[str]  # SOP Instance UIDs radguard deid releases
    studies: dict[str, list[Path]]  # original Study Instance UID -> files
    expected_by_study: dict[str, set[str]]
    quarantined: int  # originals the pipeline quarantines (they go to the dead letters)


def _phantom(root: Path, policy: str) -> Phantom:
    print(f"phantom seed {SEED} (replay: RADGUARD_PHANTOM_SEED={SEED})")
    orig = root / "studies"
    generate(orig, 1, SEED)
    key = new_key_file(root / "keys" / "pseudonym.key")
    out = root / "expected"
    summary = run_deid(RunOptions(orig, out, workers=1), load_policy(policy), load_key(key))
    manifest = [json.loads(line) for line in (root / "expected.run" / "manifest.jsonl").open()]
    studies: dict[str, list[Path]] = {}
    by_study: dict[str, set[str]] = {}
    for line in manifest:
        path = orig / line["input"]
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        studies.setdefault(uid, []).append(path)
        by_study.setdefault(uid, set())
        if line["status"] == "released":
            by_study[uid].add(Path(line["output"]).stem)
    expected = {p.stem for p in out.rglob("*.dcm")}
    assert expected and len(expected) == summary.counts["released"]
    quarantined = summary.counts["quarantined"] + summary.counts["failed"]
    return Phantom(orig, key, policy, expected, studies, by_study, quarantined)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Phantom:
    """The full research policy (burned-in text cleaned by OCR): what a site runs."""
    return _phantom(tmp_path_factory.mktemp("gateway-research"), "research")


@pytest.fixture(scope="module")
def phantom_basic(tmp_path_factory: pytest.TempPathFactory) -> Phantom:
    """The basic profile (no OCR): the fault tests are about transport, and stay fast."""
    return _phantom(tmp_path_factory.mktemp("gateway-basic"), "basic")


def _config(
    folder: Path,
    phantom: Phantom,
    port: int,
    destinations: str,
    quiet: float = 1.0,
    http_port: int = 0,
    extra: str = "",
) -> Path:
    return write_config(
        folder / "gateway.toml",
        f"""
[gateway]
ae_title = "RADGUARD"
host = "127.0.0.1"
port = {port}
allowed_calling_ae_titles = ["MODALITY", "PACS"]
spool = "{folder / "spool"}"
key_file = "{phantom.key}"
policy = "{phantom.policy}"
quiet_period_s = {quiet}

[http]
port = {http_port}

[retry]
max_attempts = 1000
initial_backoff_s = 0.3
max_backoff_s = 1.0
{extra}
{destinations}
""",
    )


def _dimse(name: str, archive: Orthanc) -> str:
    return f"""
[[destination]]
name = "{name}"
type = "dimse"
host = "127.0.0.1"
port = {archive.dicom_port}
ae_title = "{archive.aet}"
recipient = "research archive {archive.aet}"
purpose = "test"
"""


def _status(config: Path) -> dict[str, object]:
    result = radguard("serve", "status", "--config", str(config), "--json")
    return dict(json.loads(result.stdout))


def _pending(config: Path) -> int:
    report = _status(config)
    queue = report["queue"]
    assert isinstance(queue, dict)
    return int(sum(queue.values()))


def _download(archive: Orthanc, folder: Path, auth: tuple[str, str] | None = None) -> list[Path]:
    """Every instance of the archive over DICOMweb (QIDO-RS, then WADO-RS per study)."""
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if auth:
        session.auth = auth
    client = DICOMwebClient(archive.dicomweb, session=session)
    paths = []
    for study in client.search_for_studies():
        uid = study["0020000D"]["Value"][0]
        for ds in client.retrieve_study(uid, media_types=(("application/dicom", "*"),)):
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def test_storescu_to_research_archive(phantom: Phantom, tmp_path: Path) -> None:
    """storescu -> radguard serve -> C-STORE and STOW-RS (basic auth) archives and a folder."""
    archive = Orthanc(tmp_path / "archive", "ARCHIVE").start()
    web = Orthanc(tmp_path / "web", "WEBARCH", users={"radguard": "s3cret-pw"}).start()
    (tmp_path / "web.pw").write_text("s3cret-pw\n")
    port, http_port = free_port(), free_port()
    destinations = (
        _dimse("archive", archive)
        + f"""
[[destination]]
name = "web"
type = "stowrs"
url = "{web.dicomweb}"
auth = "basic"
username = "radguard"
password_file = "{tmp_path / "web.pw"}"

[[destination]]
name = "disk"
type = "folder"
path = "{tmp_path / "folder"}"
"""
    )
    config = _config(tmp_path, phantom, port, destinations, http_port=http_port)
    serve = Serve(config, tmp_path / "serve.log").start(port)
    try:
        # An unknown calling AE title is rejected at association (echo and store).
        echoscu = require_tool("echoscu")
        echo = subprocess.run(
            [echoscu, "-aet", "INTRUDER", "-aec", "RADGUARD", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
        )
        assert echo.returncode != 0
        ok = subprocess.run(
            [echoscu, "-aet", "MODALITY", "-aec", "RADGUARD", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0, ok.stderr
        files = dicom_files(phantom.orig)
        intruder = storescu(port, files[:3], aet="INTRUDER")
        assert all(run.returncode != 0 for run in intruder)
        runs = storescu(port, files)
        assert all(run.returncode == 0 for run in runs), [r.stderr[-500:] for r in runs]
        wait_for(lambda: len(archive.instances()) >= len(phantom.expected), 120, "archive")
        wait_for(lambda: _pending(config) == 0, 60, "the outboxes to empty")
        held = archive.instances()
        assert sorted(held) == sorted(phantom.expected)  # every instance, exactly once
        web_held = requests.get(
            f"{web.dicomweb}/instances",
            params={"includefield": "00080018"},
            auth=("radguard", "s3cret-pw"),
            timeout=30,
        ).json()
        assert {i["00080018"]["Value"][0] for i in web_held} == phantom.expected
        assert {p.stem for p in (tmp_path / "folder").rglob("*.dcm")} == phantom.expected

        # No identifier left and references intact: the verifier, against the originals.
        downloaded = tmp_path / "downloaded"
        downloaded.mkdir()
        assert len(_download(archive, downloaded)) == len(phantom.expected)
        report = verify(downloaded, phantom.orig, load_policy(phantom.policy))
        assert report.findings == [], f"seed {SEED}: {report.findings[:5]}"
        assert report.checks["references resolve"] == "passed"

        # Health, metrics, status: counts and the failures (rejections, quarantined files).
        health = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        metrics = requests.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
        assert f"radguard_gateway_received_total {len(files)}" in metrics
        assert f'radguard_gateway_forwarded_total{{kind="archive"}} {len(held)}' in metrics
        assert 'radguard_gateway_queue_depth{queue="outbox_studies"} 0' in metrics
        forwards = sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("radguard_gateway_forwarded_studies_total")
        )  # 3 studies x 3 destinations, more when a pause split a study into two batches
        assert forwards >= 9
        assert f"radguard_gateway_study_latency_seconds_count {forwards:g}" in metrics
        report_json = _status(config)
        rejected = report_json["rejected_associations"]
        assert isinstance(rejected, list)
        assert {r["calling_ae_title"] for r in rejected} == {"INTRUDER"}
        dead = report_json["dead_letters"]
        assert isinstance(dead, list) and len(dead) == phantom.quarantined
        assert all(d["kind"] == "pipeline" and d["reason"] for d in dead)
        text = radguard("serve", "status", "--config", str(config))
        assert text.returncode == (1 if phantom.quarantined else 0)  # dead letters: look
        assert "INTRUDER" in text.stdout and "dead letters: " in text.stdout
        assert serve.stop() == 0
    finally:
        serve.stop()
        archive.stop()
        web.stop()


def test_faults_kill_destination_down_malformed(phantom_basic: Phantom, tmp_path: Path) -> None:
    """Destination stopped then restarted; SIGKILL mid-transfer and after the answer;
    malformed instances. The archive ends with exactly the right instances; failures reported."""
    archive = Orthanc(tmp_path / "archive", "ARCHIVE").start()
    port = free_port()
    phantom = phantom_basic
    config = _config(tmp_path, phantom, port, _dimse("archive", archive), quiet=2.5)
    serve = Serve(config, tmp_path / "serve.log").start(port)
    ranked = sorted(phantom.studies, key=lambda uid: len(phantom.expected_by_study[uid]))
    released = [uid for uid in ranked if phantom.expected_by_study[uid]]
    first, last = released[0], released[-1]
    others = [uid for uid in ranked if uid not in (first, last)]
    try:
        # 1. The archive is down while a study is released: retried with backoff, reported;
        #    the gateway is SIGKILLed with the delivery pending and restarted; then the archive
        #    comes back and the study arrives.
        archive.stop()
        assert all(r.returncode == 0 for r in storescu(port, phantom.studies[first]))

        def failing() -> bool:
            pending = _status(config)["pending"]
            assert isinstance(pending, dict)
            return any(e["attempts"] >= 2 and e["last_error"] for e in pending["archive"])

        wait_for(failing, 60, "failed delivery attempts to be reported")
        serve.kill()
        serve = Serve(config, tmp_path / "serve.log").start(port)
        archive.start()
        wait_for(lambda: set(archive.instances()) == phantom.expected_by_study[first], 60, "retry")

        # 2. Studies answered in full, then SIGKILL before their quiet period ended, in the
        #    middle of another study's transfer (the modality sends that one again).
        for uid in others:
            assert all(r.returncode == 0 for r in storescu(port, phantom.studies[uid]))
        sender = subprocess.Popen(
            [require_tool("storescu"), "-aet", "MODALITY", "-aec", "RADGUARD", "-R", "-xe"]
            + ["-nh", "127.0.0.1", str(port)]
            + [str(p) for p in phantom.studies[last] if _uncompressed(p)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        folder = tmp_path / "spool" / "incoming" / _study_key(phantom, last)
        wait_for(
            lambda: folder.exists() and sum(1 for _ in folder.glob("*.dcm")) >= 5,
            60,
            "part of the second transfer",
            every=0.02,
        )
        serve.kill()
        sender.wait(60)
        assert sender.returncode != 0  # the modality saw the failure
        serve = Serve(config, tmp_path / "serve.log").start(port)
        assert all(r.returncode == 0 for r in storescu(port, phantom.studies[last]))

        # 3. Malformed instances from the modality: one without a Study Instance UID (refused
        #    with 0xC210 and kept with the reason), one whose pixel data is truncated (spooled
        #    and answered, then quarantined by the pipeline).
        template = pydicom.dcmread(next(p for p in phantom.studies[last] if _uncompressed(p)))
        broken = tmp_path / "broken.dcm"
        template.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(SEED), "a"])
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        del template.StudyInstanceUID
        template.save_as(broken, enforce_file_format=True)
        [refused] = storescu(port, [broken], extra=("-v",))
        said = (refused.stdout + refused.stderr).lower()
        assert "error: cannotunderstand" in said, said[-800:]  # 0xC210
        truncated = tmp_path / "truncated.dcm"
        ds = pydicom.dcmread(next(p for p in phantom.studies[last] if _uncompressed(p)))
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(SEED), "b"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
        ds.save_as(truncated, enforce_file_format=True)
        assert all(r.returncode == 0 for r in storescu(port, [truncated]))

        wait_for(
            lambda: set(archive.instances()) == phantom.expected and _pending(config) == 0,
            120,
            "every study in the archive",
        )
        held = archive.instances()
        assert sorted(held) == sorted(phantom.expected)  # exactly once each, nothing lost
        report = _status(config)
        dead = report["dead_letters"]
        assert isinstance(dead, list)
        kinds = [d["kind"] for d in dead]
        assert kinds.count("received") == 1
        # Every quarantined original is there (an instance received twice, before and after
        # the kill, is reported twice): the phantom's, plus the truncated one.
        quarantined = {
            str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            for path in (tmp_path / "spool" / "deadletter" / "pipeline").rglob("*.dcm")
        }
        assert len(quarantined) == phantom.quarantined + 1
        assert any("truncated pixel data" in d["reason"] for d in dead)
        assert serve.stop() == 0
    finally:
        serve.stop()
        archive.stop()


def _uncompressed(path: Path) -> bool:
    from pydicom.filereader import read_file_meta_info

    return str(read_file_meta_info(path).TransferSyntaxUID) in (
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2",
    )


def _study_key(phantom: Phantom, study_uid: str) -> str:
    """The spool's folder name for a study (a keyed digest of its UID)."""
    from radguard.gateway.spool import Spool

    secret = load_key(phantom.key).derive("gateway-spool")
    return Spool(Path("/nonexistent"), secret).digest("study", study_uid)
