"""The gateway in one process: configuration, spool, the ledger hook, the risk gate per batch,
DICOM TLS, metrics. Real associations (pynetdicom, dcmtk), real files, no Orthanc needed."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
import requests

import radguard.gateway as gateway_pkg
from radguard.deid.keys import load_key
from radguard.gateway import (
    Gateway,
    GatewayConfigError,
    Hooks,
    Spool,
    StudyForwarded,
    check_config,
    gateway_status,
    load_config,
    requeue,
)
from radguard.gateway.config import RetrySettings
from radguard.gateway.forward import send_folder
from radguard.gateway.metrics import Metrics
from test_gateway_support import free_port, radguard, wait_for, write_config

from conftest import pydicom_file, require_tool

# Two real files of two different patients and studies, both released by the research policy.
_FILES = ("CT_small.dcm", "MR_small.dcm")


def _config_text(tmp: Path, key: Path, port: int, extra: str = "", dest: str = "") -> str:
    return f"""
[gateway]
ae_title = "RADGUARD"
host = "127.0.0.1"
port = {port}
allowed_calling_ae_titles = ["MODALITY"]
spool = "spool"
key_file = "{key}"
quiet_period_s = 0.3

[retry]
max_attempts = 3
initial_backoff_s = 0.1
max_backoff_s = 0.2
{extra}
{
        dest
        or f'''
[[destination]]
name = "disk"
type = "folder"
path = "{tmp / "released"}"
recipient = "Research archive"
purpose = "research"
'''
    }
"""


def _send(port: int, files: list[Path], aet: str = "MODALITY") -> list[int]:
    """C-STORE files with pynetdicom as the modality; return the statuses."""
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    for path in files:
        meta = pydicom.filereader.read_file_meta_info(path)
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADGUARD")
    if not assoc.is_established:
        return []
    try:
        return [int(assoc.send_c_store(path).Status) for path in files]
    finally:
        assoc.release()


def test_public_names_import() -> None:
    for name in gateway_pkg.__all__:
        assert getattr(gateway_pkg, name) is not None


def test_config_loads_every_section(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    (tmp_path / "token").write_text("t")
    text = _config_text(
        tmp_path,
        key_file,
        11112,
        extra=f"""
[risk]
max_prosecutor = 0.2

[tls]
cert = "{tmp_path / "cert.pem"}"
key = "key.pem"

[http]
host = "127.0.0.1"
port = 9102

[ledger]
enabled = true
url = "ledger.sqlite"
""",
        dest="""
[[destination]]
name = "pacs"
type = "dimse"
host = "10.0.0.5"
port = 104
ae_title = "RESEARCH"
purpose = "ai-training"
agreement = "DUA-7"

[[destination]]
name = "web"
type = "stowrs"
url = "https://archive/dicom-web/"
auth = "bearer"
token_file = "token"
""",
    )
    config = load_config(write_config(tmp_path / "g.toml", text))
    assert config.spool == tmp_path / "spool"
    assert config.max_prosecutor == 0.2
    assert config.tls is not None and config.tls.key == tmp_path / "key.pem"
    assert config.ledger.enabled and config.ledger.url == str(tmp_path / "ledger.sqlite")
    pacs, web = config.destinations
    assert (pacs.kind.value, pacs.port, pacs.calling_ae_title) == ("dimse", 104, "RADGUARD")
    assert pacs.agreement == "DUA-7" and pacs.purpose == "ai-training"
    assert web.url == "https://archive/dicom-web" and web.auth.secret() == "t"
    assert config.allowed_calling_ae_titles == {"MODALITY"}


def test_config_problems_are_all_reported(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "bad.toml",
        """
[gateway]
port = 70000
spool = "spool"
quiet_period_s = "soon"
colour = "blue"

[[destination]]
name = "x"
type = "carrier-pigeon"

[[destination]]
name = "y"
type = "stowrs"
url = "ftp://nowhere"
auth = "basic"
""",
    )
    problems = check_config(path)
    text = "\n".join(problems)
    for expected in (
        "gateway.port: must be between 1 and 65535",
        "gateway.allowed_calling_ae_titles: is required",
        "gateway.key_file: is required",
        "gateway.colour: unknown key",
        "gateway.quiet_period_s: must be a number",
        "destination[0].type: must be one of",
        "destination[1].url: must start with http",
        "destination[1].auth: basic needs username",
    ):
        assert expected in text, text
    with pytest.raises(GatewayConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == len(problems)


def test_serve_refuses_to_start_without_an_explicit_key(tmp_path: Path) -> None:
    config = _config_text(tmp_path, tmp_path / "k", free_port())
    no_key = write_config(
        tmp_path / "nokey.toml", config.replace(f'key_file = "{tmp_path / "k"}"', "")
    )
    result = radguard("serve", "--config", str(no_key))
    assert result.returncode == 2
    assert "key_file: is required" in result.stderr and "radguard key new" in result.stderr
    missing = write_config(tmp_path / "missing.toml", config)
    result = radguard("serve", "--config", str(missing))
    assert result.returncode == 2 and "no such key file" in result.stderr
    checked = radguard("serve", "check", "--config", str(no_key))
    assert checked.returncode == 2 and "key_file" in checked.stderr


def test_spool_states_are_durable_and_named_by_keyed_digests(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", b"k" * 32).open()
    data = pydicom_file("CT_small.dcm").read_bytes()
    path = spool.store(data, "1.2.3", "1.2.3.4")
    assert path.read_bytes() == data and "1.2.3" not in str(path)
    assert spool.depth()["incoming_instances"] == 1
    assert spool.quiet_studies(60) == []  # still inside its quiet period
    [quiet] = spool.quiet_studies(0.0)
    batch = spool.take([quiet], "b1", 0.0)
    assert list((batch / "in").rglob("*.dcm")) and spool.depth()["incoming_instances"] == 0
    meta = json.loads((batch / "batch.json").read_text())
    assert meta["studies"][0]["instances"] == 1
    entry = spool.dead_letter(batch / "in", "pipeline", "b1-x", {"reason": "why", "files": 1})
    assert (entry / "reason.json").exists()
    assert [d["reason"] for d in spool.dead_letters()] == ["why"]
    with pytest.raises(Exception, match="another radguard gateway"):
        Spool(tmp_path / "spool", b"k" * 32).open()
    assert spool.in_use()
    spool.close()
    assert not spool.in_use()


def test_backoff_grows_and_is_capped() -> None:
    retry = RetrySettings(max_attempts=5, initial_backoff_s=1, multiplier=3, max_backoff_s=20)
    assert [retry.backoff(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]


def test_metrics_text_format() -> None:
    metrics = Metrics()
    metrics.inc("received", "", 3)
    metrics.inc("forwarded", "archive", 2)
    metrics.observe_latency(1.5)
    text = metrics.prometheus({"incoming_instances": 4})
    assert "radguard_gateway_received_total 3" in text
    assert 'radguard_gateway_forwarded_total{kind="archive"} 2' in text
    assert 'radguard_gateway_queue_depth{queue="incoming_instances"} 4' in text
    assert 'radguard_gateway_study_latency_seconds_bucket{le="2"} 1' in text
    assert 'radguard_gateway_study_latency_seconds_bucket{le="1"} 0' in text


def test_receive_release_record(tmp_path: Path, key_file: Path) -> None:
    """Two studies over a real association, into a folder; a recording hook that fails twice
    keeps the delivery pending (sent once, recorded on the third try)."""
    config = load_config(
        write_config(tmp_path / "g.toml", _config_text(tmp_path, key_file, free_port()))
    )
    sends: list[int] = []
    calls: list[StudyForwarded] = []

    def sender(files: list[Path]) -> None:
        sends.append(len(files))
        send_folder(config.destinations[0], files)

    def flaky(event: StudyForwarded) -> None:
        calls.append(event)
        if len(calls) <= 2:
            raise OSError("ledger unreachable")

    hooks = Hooks()
    hooks.add(flaky, recording=True)
    gateway = Gateway(config, hooks=hooks, senders={"disk": sender})
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file(n) for n in _FILES]) == [0, 0]
        assert _send(gateway.port, [pydicom_file("CT_small.dcm")], aet="STRANGER") == []
        wait_for(
            lambda: (
                gateway.spool.depth() == dict.fromkeys(gateway.spool.depth(), 0)
                and len({c.study for c in calls[2:]}) == 2
            ),
            30,
            "two studies recorded",
        )
    finally:
        gateway.stop()
    released = sorted((tmp_path / "released").rglob("*.dcm"))
    assert len(released) == 2 and sends == [1, 1]  # each study sent once despite the retries
    originals = {str(pydicom.dcmread(pydicom_file(n)).SOPInstanceUID) for n in _FILES}
    for path in released:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES" and ds.SOPInstanceUID not in originals
    recorded = {c.study for c in calls}
    assert recorded == {pydicom.dcmread(p).StudyInstanceUID for p in released}
    assert all(c.recipient == "Research archive" and c.purpose == "research" for c in calls)
    assert all(len(c.files) == 1 and len(c.files[0].sha256) == 64 for c in calls)
    report = gateway_status(config)
    assert report["forwarded_studies"] == 2 and report["dead_letters"] == []
    assert report["rejected_associations"][0]["calling_ae_title"] == "STRANGER"


def test_ledger_records_each_forwarded_study(tmp_path: Path, key_file: Path) -> None:
    """[ledger] wires the gateway to radguard.govern: one signed 'forward' entry per study,
    with the keyed patient hash, never the Patient ID."""
    from radguard.govern import new_signing_key, open_ledger, patient_hash

    new_signing_key("ledger")
    ledger_path = tmp_path / "ledger.sqlite"
    text = _config_text(tmp_path, key_file, free_port(), f'[ledger]\nurl = "{ledger_path}"')
    config = load_config(write_config(tmp_path / "g.toml", text))
    gateway = Gateway(config)
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file(n) for n in _FILES]) == [0, 0]
        wait_for(lambda: gateway_status(config)["forwarded_studies"] == 2, 30, "two forwards")
    finally:
        gateway.stop()
    keyring = load_key(key_file)
    expected = {
        patient_hash(keyring, str(pydicom.dcmread(pydicom_file(n)).PatientID)).hex() for n in _FILES
    }
    ledger = open_ledger(str(ledger_path), write=False)
    try:
        entries = [entry for _, entry in ledger.entries()]
        check = ledger.verify()
        assert check.ok and check.size == 2, check.problems
    finally:
        ledger.close()
    assert len(entries) == 2
    assert {e["patients"][0]["patient"] for e in entries} == expected
    for entry in entries:
        assert entry["kind"] == "forward" and entry["recipient"]["name"] == "Research archive"
        assert entry["purpose"] == "research" and entry["files"] == 1
        assert entry["gateway"]["destination"] == "disk"
        assert len(entry["gateway"]["files_sha256"]) == 64
        dumped = json.dumps(entry)
        for name in _FILES:
            assert str(pydicom.dcmread(pydicom_file(name)).PatientID) not in dumped


def test_risk_limit_applies_to_the_release_batch(tmp_path: Path, key_file: Path) -> None:
    """One study alone is unique: with a risk limit its batch is withheld, not forwarded."""
    text = _config_text(tmp_path, key_file, free_port(), "[risk]\nmax_prosecutor = 0.5")
    config = load_config(write_config(tmp_path / "g.toml", text))
    gateway = Gateway(config)
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file("CT_small.dcm")]) == [0]
        wait_for(lambda: gateway.spool.dead_letters(), 30, "the batch to be withheld")
    finally:
        gateway.stop()
    [dead] = gateway_status(config)["dead_letters"]
    assert dead["kind"] == "withheld" and "prosecutor risk" in dead["reason"]
    assert not list((tmp_path / "released").rglob("*.dcm"))


def test_dead_letter_after_retries_then_requeue(tmp_path: Path, key_file: Path) -> None:
    """A destination that keeps failing: retried with backoff, dead-lettered with the reason,
    visible in status; 'serve retry' puts it back once fixed."""
    blocker = tmp_path / "released"
    blocker.write_text("not a folder")  # the folder destination cannot be created
    config_path = write_config(tmp_path / "g.toml", _config_text(tmp_path, key_file, free_port()))
    config = load_config(config_path)
    gateway = Gateway(config)
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file("CT_small.dcm")]) == [0]
        wait_for(lambda: gateway.spool.dead_letters(), 30, "the dead letter")
    finally:
        gateway.stop()
    [dead] = gateway_status(config)["dead_letters"]
    assert dead["kind"] == "forward-disk" and "delivery failed 3 times" in dead["reason"]
    status = radguard("serve", "status", "--config", str(config_path))
    assert status.returncode == 1 and "forward-disk" in status.stdout
    blocker.unlink()
    assert len(requeue(config)) == 1
    gateway = Gateway(config)
    gateway.start()
    try:
        wait_for(lambda: list(blocker.rglob("*.dcm")), 30, "the requeued delivery")
    finally:
        gateway.stop()
    assert gateway_status(config)["dead_letters"] == []


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_dicom_tls_associations(tmp_path: Path, key_file: Path) -> None:
    """With [tls] the node speaks DICOM TLS only: dcmtk's echoscu +tls and a pynetdicom TLS
    store succeed; a plain association does not."""
    from pynetdicom import AE

    cert, key = _self_signed(tmp_path)
    port = free_port()
    text = _config_text(tmp_path, key_file, port, f'[tls]\ncert = "{cert}"\nkey = "{key}"')
    gateway = Gateway(load_config(write_config(tmp_path / "g.toml", text)))
    gateway.start()
    try:
        echo = subprocess.run(
            [
                require_tool("echoscu"),
                "-aet",
                "MODALITY",
                "-aec",
                "RADGUARD",
                "+tls",
                str(key),
                str(cert),
                "+cf",
                str(cert),
                "localhost",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert echo.returncode == 0, echo.stderr
        assert _send(port, [pydicom_file("CT_small.dcm")]) == []  # plain TCP: refused
        context = ssl.create_default_context(cafile=str(cert))
        ae = AE(ae_title="MODALITY")
        meta = pydicom.filereader.read_file_meta_info(pydicom_file("CT_small.dcm"))
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
        assoc = ae.associate(
            "127.0.0.1", port, ae_title="RADGUARD", tls_args=(context, "localhost")
        )
        assert assoc.is_established
        assert int(assoc.send_c_store(pydicom_file("CT_small.dcm")).Status) == 0
        assoc.release()
        wait_for(lambda: list((tmp_path / "released").rglob("*.dcm")), 30, "the release")
    finally:
        gateway.stop()


def test_http_health_and_metrics(tmp_path: Path, key_file: Path) -> None:
    http_port = free_port()
    text = _config_text(tmp_path, key_file, free_port(), f"[http]\nport = {http_port}")
    gateway = Gateway(load_config(write_config(tmp_path / "g.toml", text)))
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file("CT_small.dcm")]) == [0]
        health = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        wait_for(
            lambda: (
                'forwarded_total{kind="disk"} 1'
                in requests.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
            ),
            30,
            "the forwarded counter",
        )
        assert requests.get(f"http://127.0.0.1:{http_port}/nope", timeout=5).status_code == 404
    finally:
        gateway.stop()
    time.sleep(0.1)
    shutil.rmtree(tmp_path / "spool", ignore_errors=True)


def test_consent_gate_excludes_opt_outs(tmp_path: Path, key_file: Path) -> None:
    """[consent]: a patient who opted out of the purpose is excluded before release."""
    from radguard.govern import ConsentRegistry, Decision, patient_hash
    from radguard.govern.consent import Rule

    keyring = load_key(key_file)
    registry = tmp_path / "consent.sqlite"
    opted_out = str(pydicom.dcmread(pydicom_file("CT_small.dcm")).PatientID)
    with ConsentRegistry(registry, keyring) as store:
        store.add([Rule(patient_hash(keyring, opted_out), "research", Decision.DENY)])
    text = _config_text(
        tmp_path, key_file, free_port(), f'[consent]\npurpose = "research"\nregistry = "{registry}"'
    )
    config = load_config(write_config(tmp_path / "g.toml", text))
    gateway = Gateway(config)
    gateway.start()
    try:
        assert _send(gateway.port, [pydicom_file(n) for n in _FILES]) == [0, 0]
        wait_for(lambda: gateway.metrics.get("excluded") >= 1, 30, "the opt-out excluded")
        wait_for(lambda: gateway_status(config)["forwarded_studies"] == 1, 30, "one forward")
    finally:
        gateway.stop()
    [released] = list((tmp_path / "released").rglob("*.dcm"))
    assert pydicom.dcmread(released).Modality == "MR"
    assert gateway_status(config)["dead_letters"] == []  # deliberate: not a failure


def test_consent_purpose_must_match_destinations(tmp_path: Path, key_file: Path) -> None:
    text = _config_text(tmp_path, key_file, 11112, '[consent]\npurpose = "ai-training"')
    problems = check_config(write_config(tmp_path / "g.toml", text))
    assert any("differs from consent.purpose" in p for p in problems)
