"""DICOM Digital Signatures (PS3.15 Annex C): interoperability with dcmtk's dcmsign, tampering."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radguard.govern import dsig
from radguard.govern.keys import KeyKind, load_signer, new_signing_key, public_keys
from radguard.govern.release import sign_release, verify_release

from conftest import pydicom_file, require_tool


def _key_and_cert(folder: Path, kind: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {kind}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / f"{kind}.key.pem", folder / f"{kind}.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _dcmsign_verify(path: Path, cert: Path) -> bool:
    tool = require_tool("dcmsign")
    done = subprocess.run(
        [tool, "--verify", "--require-sig", "+cf", str(cert), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def _change_pixel(path: Path, out: Path) -> None:
    ds = pydicom.dcmread(path)
    array = ds.pixel_array.copy()
    array.flat[len(array.flat) // 2] += 1
    ds.PixelData = array.tobytes()
    ds.save_as(out)


def _change_name(path: Path, out: Path) -> None:
    ds = pydicom.dcmread(path)
    ds.PatientName = "Someone^Else"
    ds.save_as(out)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_radguard_signatures_verify_in_dcmsign(tmp_path: Path, kind: str, name: str) -> None:
    key, cert = _key_and_cert(tmp_path, kind)
    ds = pydicom.dcmread(pydicom_file(name))
    dsig.sign_dataset(ds, key.read_bytes(), cert.read_bytes())
    signed = tmp_path / "signed.dcm"
    ds.save_as(signed)
    assert _dcmsign_verify(signed, cert)
    assert [c.valid for c in dsig.verify_file(signed)] == [True]
    if name == "CT_small.dcm":  # native pixels: change one
        _change_pixel(signed, tmp_path / "pixel.dcm")
        assert not _dcmsign_verify(tmp_path / "pixel.dcm", cert)
        assert [c.valid for c in dsig.verify_file(tmp_path / "pixel.dcm")] == [False]
    _change_name(signed, tmp_path / "name.dcm")
    assert not _dcmsign_verify(tmp_path / "name.dcm", cert)
    assert [c.valid for c in dsig.verify_file(tmp_path / "name.dcm")] == [False]


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm"])
def test_dcmsign_signatures_verify_in_radguard(tmp_path: Path, kind: str, name: str) -> None:
    tool = require_tool("dcmsign")
    key, cert = _key_and_cert(tmp_path, kind)
    signed = tmp_path / "signed.dcm"
    subprocess.run(
        [
            tool,
            "--sign",
            str(key),
            str(cert),
            "-pw",
            "--mac-sha256",
            str(pydicom_file(name)),
            str(signed),
        ],
        check=True,
        capture_output=True,
    )
    checks = dsig.verify_file(signed, [cert.read_bytes()])
    assert [(c.valid, c.trusted) for c in checks] == [(True, True)]
    assert checks[0].signed_elements > 20
    _change_name(signed, tmp_path / "name.dcm")
    assert [c.valid for c in dsig.verify_file(tmp_path / "name.dcm")] == [False]
    assert not _dcmsign_verify(tmp_path / "name.dcm", cert)
    if name != "SC_rgb_rle.dcm":
        _change_pixel(signed, tmp_path / "pixel.dcm")
        assert [c.valid for c in dsig.verify_file(tmp_path / "pixel.dcm")] == [False]
        assert not _dcmsign_verify(tmp_path / "pixel.dcm", cert)


def _paste_lesion(path: Path) -> None:
    """CT-GAN-like tampering: blend a round, nodule-like bright patch into the lung field."""
    ds = pydicom.dcmread(path)
    image = ds.pixel_array.astype(np.int32)
    rows, cols = image.shape
    cy, cx, radius = rows // 2, cols // 3, 6
    yy, xx = np.mgrid[:rows, :cols]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    blob = np.exp(-d2 / (2.0 * (radius / 2) ** 2))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    lesion_hu = 60.0 / slope  # soft-tissue density, like an injected nodule
    image = np.where(d2 <= radius**2, image + (lesion_hu * blob).astype(np.int32), image)
    info = np.iinfo(ds.pixel_array.dtype)
    ds.PixelData = np.clip(image, info.min, info.max).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(path)


def test_ct_gan_like_lesion_is_caught_by_both_checks(tmp_path: Path) -> None:
    new_signing_key(KeyKind.RELEASE)
    signer = load_signer(KeyKind.RELEASE)
    release = tmp_path / "release"
    release.mkdir()
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert signer.certificate_pem is not None
    dsig.sign_dataset(ds, signer.private_pem, signer.certificate_pem)
    ds.save_as(release / "slice.dcm")
    sign_release(release, signer, purpose="research")
    assert verify_release(release, public_keys(KeyKind.RELEASE)).ok
    assert all(c.valid for c in dsig.verify_file(release / "slice.dcm"))

    _paste_lesion(release / "slice.dcm")
    check = verify_release(release, public_keys(KeyKind.RELEASE))
    assert not check.ok and check.pixels_changed == ["slice.dcm"]
    assert [c.valid for c in dsig.verify_file(release / "slice.dcm")] == [False]
    cert = tmp_path / "cert.pem"
    cert.write_bytes(signer.certificate_pem)
    assert not _dcmsign_verify(release / "slice.dcm", cert)


def test_intake_records_signatures_before_deid(tmp_path: Path) -> None:
    key, cert = _key_and_cert(tmp_path, "ec")
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    assert dsig.intake_note(ds) is None
    dsig.sign_dataset(ds, key.read_bytes(), cert.read_bytes())
    note = dsig.intake_note(ds)
    assert note is not None and "valid" in note and "INVALID" not in note
    ds.PatientName = "Altered^After^Signing"
    bad = dsig.intake_note(ds)
    assert bad is not None and "INVALID" in bad
    # the run summary counts notes through intake_verdict, not by searching the prose
    assert (dsig.intake_verdict(note), dsig.intake_verdict(bad)) == ("valid", "invalid")
    assert dsig.intake_verdict("input: decoder warning") is None


def test_trust_follows_the_issuer_signature(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(
        subject: str,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(signer, hashes.SHA256())
        )

    ca_key, fake_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("Site CA", "Site CA", ca_key, ca_key)
    impostor = certificate("Site CA", "Site CA", fake_key, fake_key)  # same name, other key
    leaf = certificate("scanner 1", "Site CA", leaf_key, ca_key)
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dsig.sign_dataset(ds, key_pem, leaf.public_bytes(pem))
    assert [c.trusted for c in dsig.verify_dataset(ds, [ca.public_bytes(pem)])] == [True]
    assert [c.trusted for c in dsig.verify_dataset(ds, [impostor.public_bytes(pem)])] == [False]


def test_signing_a_released_tree_is_idempotent(tmp_path: Path) -> None:
    new_signing_key(KeyKind.RELEASE)
    signer = load_signer(KeyKind.RELEASE)
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom_file(name), folder / name)
    (folder / "notes.txt").write_text("not DICOM")
    assert dsig.sign_tree(folder, signer) == 2
    first = (folder / "CT_small.dcm").read_bytes()
    assert dsig.sign_tree(folder, signer) == 2  # a resumed run signs again: nothing changes
    assert (folder / "CT_small.dcm").read_bytes() == first
    assert len(pydicom.dcmread(folder / "CT_small.dcm").DigitalSignaturesSequence) == 1
