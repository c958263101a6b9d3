"""DICOM Digital Signatures (PS3.15 Annex C, PS3.3 C.12.1): sign and verify in the files.

A signature covers the listed Data Elements of the dataset, encoded in Explicit VR Little
Endian in the "signature format" of PS3.15 C.12.1.1.3.1 (sequence and item lengths left out,
no delimiters for defined-length encodings), followed by the MAC ID Number, Digital Signature
UID, Digital Signature DateTime and Certificate Type of the Digital Signatures Sequence item.
The MAC is a plain digest (SHA-256 by default); the Signature is RSA PKCS#1 v1.5 or ECDSA over
it with the key of the X.509 Certificate of Signer. This is the byte stream dcmtk's ``dcmsign``
builds, so files signed here verify there and the other way around (tested).
"""

from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from radguard.errors import RadguardError

# PS3.3 C.12.1.1.3.1.3: the MAC algorithms this module computes (defined terms -> hashlib names)
_MAC_ALGORITHMS = {
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
    "SHA1": "sha1",
    "RIPEMD160": "ripemd160",
    "MD5": "md5",
}
_DIGITAL_SIGNATURES_SEQUENCE = 0xFFFAFFFA
_MAC_PARAMETERS_SEQUENCE = 0x4FFE0001
# Elements of the signature item left out of the MAC (PS3.15 C.12.1.1.3.1.2)
_SIGNATURE_ITEM_EXCLUDED = {0x04000115, 0x04000120, 0x04000305, 0x04000310}
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
_EXTENDED_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
# Key attributes signed by radguard (with the pixel data): identity, study, geometry.
KEY_ATTRIBUTES = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "Modality",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "PixelData",
)


class SignatureError(RadguardError):
    """A DICOM signature cannot be created (unsupported data or key)."""


@dataclass
class SignatureCheck:
    """The outcome of checking one Digital Signatures Sequence item."""

    uid: str
    valid: bool
    signer: str = ""
    mac_algorithm: str = ""
    signed_elements: int = 0
    problems: list[str] = field(default_factory=list)
    trusted: bool | None = None  # None: no trust anchors were given


def _signable(tag: int) -> bool:
    """PS3.15 C.12.1.1.3.1.1: elements that can be signed (dcmtk's rule, the same list)."""
    group, element = tag >> 16, tag & 0xFFFF
    if element == 0 or group < 0x0008 or tag == 0x00080001:
        return False
    if group == 0xFFFA or tag in (_MAC_PARAMETERS_SEQUENCE, 0xFFFCFFFC):
        return False
    return tag not in (0xFFFEE00D, 0xFFFEE0DD)


def _encode_element(elem: DataElement, out: BytesIO) -> None:
    """One element in the signature format (Explicit VR Little Endian, PS3.15 C.12.1).

    Sequences: tag, VR and reserved bytes without the length, each item as its tag without a
    length, then the Sequence Delimitation tag (no length). Encapsulated pixel data is a
    sequence of fragments encoded the same way (item tag, then the fragment bytes).
    """
    if elem.VR == "SQ":
        out.write(struct.pack("<HH", elem.tag.group, elem.tag.element) + b"SQ\x00\x00")
        for item in elem.value:
            out.write(_ITEM)
            for child in item:
                _encode_element(child, out)
        out.write(_SEQUENCE_DELIMITER)
        return
    if elem.tag == 0x7FE00010 and elem.is_undefined_length:
        from pydicom.encaps import generate_fragments

        out.write(struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00")
        for fragment in generate_fragments(elem.value):
            out.write(_ITEM + fragment)  # item tag, no length (dcmtk's encoding)
        out.write(_SEQUENCE_DELIMITER)
        return
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_data_element(buffer, elem)
    out.write(buffer.getvalue())


def _raw_bytes(ds: Dataset, tag: BaseTag) -> bytes | None:
    """An element still as read from an Explicit VR Little Endian file: its bytes as they are
    (the signature format of a non-sequence element is its normal encoding), or None."""
    raw = ds.get_item(tag)
    if not isinstance(raw, RawDataElement) or raw.is_implicit_VR or not raw.is_little_endian:
        return None
    if raw.VR is None or raw.VR == "SQ" or raw.length == 0xFFFFFFFF or raw.value is None:
        return None
    value = bytes(raw.value)
    if len(value) % 2:
        return None  # odd length on file: let pydicom pad it as it writes
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + raw.VR.encode()
    if raw.VR in _EXTENDED_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    if len(value) > 0xFFFF:
        return None
    return head + struct.pack("<H", len(value)) + value


def _mac_stream(
    ds: Dataset, tags: list[BaseTag] | None, signature_item: Dataset
) -> tuple[bytes, list[BaseTag]]:
    """The byte stream the MAC covers, and the tags it covered (dataset order)."""
    out = BytesIO()
    wanted = None if tags is None else {int(t) for t in tags}
    covered: list[BaseTag] = []
    for tag in sorted(ds.keys()):
        if wanted is not None and int(tag) not in wanted:
            continue
        if not _signable(int(tag)):
            if wanted is not None:
                raise SignatureError(f"element {tag} cannot be signed (PS3.15 C.12.1)")
            continue
        raw = _raw_bytes(ds, tag)
        if raw is not None:
            out.write(raw)
        else:
            _encode_element(ds[tag], out)
        covered.append(Tag(tag))
    for elem in signature_item:
        if int(elem.tag) not in _SIGNATURE_ITEM_EXCLUDED:
            _encode_element(elem, out)
    return out.getvalue(), covered


def _digest(name: str, data: bytes) -> bytes:
    import hashlib

    try:
        return hashlib.new(_MAC_ALGORITHMS[name], data).digest()
    except (KeyError, ValueError) as error:
        raise SignatureError(f"unsupported MAC algorithm {name!r}") from error


def _hash_algorithm(name: str):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return {
        "SHA256": hashes.SHA256(),
        "SHA384": hashes.SHA384(),
        "SHA512": hashes.SHA512(),
        "SHA1": hashes.SHA1(),
        "MD5": hashes.MD5(),
    }[name]


def sign_dataset(
    ds: Dataset,
    private_key_pem: bytes,
    certificate_pem: bytes,
    *,
    attributes: tuple[str, ...] | None = KEY_ATTRIBUTES,
    mac_algorithm: str = "SHA256",
) -> str:
    """Add a Digital Signature to ``ds`` (in place); returns its Digital Signature UID.

    ``attributes`` lists the keywords to sign (those present are signed); ``None`` signs every
    signable element, as ``dcmsign --sign`` does.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    cert = x509.load_pem_x509_certificate(certificate_pem)
    if mac_algorithm not in ("SHA256", "SHA384", "SHA512"):
        raise SignatureError("radguard signs with SHA256, SHA384 or SHA512 MACs")
    tags: list[BaseTag] | None = None
    if attributes is not None:
        tags = [Tag(k) for k in attributes if k in ds]
    macs = ds.get("MACParametersSequence") or Sequence()
    sigs = ds.get("DigitalSignaturesSequence") or Sequence()
    used = {int(item.get("MACIDNumber", 0)) for item in macs}
    mac_id = next(i for i in range(0x10000) if i not in used)
    uid = generate_uid()
    item = Dataset()
    item.MACIDNumber = mac_id
    item.DigitalSignatureUID = uid
    now = _dt.datetime.now(_dt.UTC)
    item.DigitalSignatureDateTime = now.strftime("%Y%m%d%H%M%S.%f+0000")
    item.CertificateType = "X509_1993_SIG"
    stream, covered = _mac_stream(ds, tags, item)
    digest = _digest(mac_algorithm, stream)
    algorithm = _hash_algorithm(mac_algorithm)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
        if len(signature) % 2:
            signature += b"\x00"  # OB values have even length; the DER length says where it ends
    else:
        raise SignatureError("DICOM signatures need an RSA or ECDSA key")
    from cryptography.hazmat.primitives.serialization import Encoding

    item.CertificateOfSigner = cert.public_bytes(Encoding.DER)
    item.Signature = signature
    mac_item = Dataset()
    mac_item.MACIDNumber = mac_id
    mac_item.MACCalculationTransferSyntaxUID = _mac_syntax(ds)
    mac_item.MACAlgorithm = mac_algorithm
    mac_item.add_new(0x04000020, "AT", covered)
    macs.append(mac_item)
    sigs.append(item)
    ds.MACParametersSequence = macs
    ds.DigitalSignaturesSequence = sigs
    return uid


def _mac_syntax(ds: Dataset) -> str:
    """Explicit VR Little Endian, or the file's own encapsulated syntax (whose headers are
    Explicit VR Little Endian too): compressed pixel data is signed as stored."""
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if syntax and syntax.is_encapsulated:
        return str(syntax)
    return str(ExplicitVRLittleEndian)


def _der_length(signature: bytes) -> bytes:
    """ECDSA signatures are DER; drop the pad byte an even-length OB value may carry."""
    if len(signature) >= 2 and signature[0] == 0x30:
        length = signature[1]
        if length < 0x80:
            return signature[: 2 + length]
        size = length & 0x7F
        total = int.from_bytes(signature[2 : 2 + size], "big")
        return signature[: 2 + size + total]
    return signature


def verify_dataset(ds: Dataset, trusted_pem: list[bytes] | None = None) -> list[SignatureCheck]:
    """Check every signature of the main dataset; an empty list means it carries none."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    anchors = None
    if trusted_pem is not None:
        anchors = [x509.load_pem_x509_certificate(p) for p in trusted_pem]
    macs = {int(m.get("MACIDNumber", -1)): m for m in ds.get("MACParametersSequence") or []}
    checks: list[SignatureCheck] = []
    for item in ds.get("DigitalSignaturesSequence") or []:
        check = SignatureCheck(str(item.get("DigitalSignatureUID", "")), False)
        checks.append(check)
        mac = macs.get(int(item.get("MACIDNumber", -2)))
        if mac is None:
            check.problems.append("no MAC Parameters item with this MAC ID Number")
            continue
        syntax = str(mac.get("MACCalculationTransferSyntaxUID", ""))
        if syntax != ExplicitVRLittleEndian and not UID(syntax).is_encapsulated:
            check.problems.append(f"MAC transfer syntax {syntax} is not supported")
            continue
        check.mac_algorithm = str(mac.get("MACAlgorithm", ""))
        raw_tags = mac.get("DataElementsSigned")
        if raw_tags is None or raw_tags == "":
            raw_tags = []
        elif not isinstance(raw_tags, (list, MultiValue)):
            raw_tags = [raw_tags]
        tags = [Tag(t) for t in raw_tags]
        if not tags:
            check.problems.append("Data Elements Signed is empty")
            continue
        missing = [t for t in tags if t not in ds]
        if missing:
            check.problems.append(f"{len(missing)} signed element(s) are missing")
            continue
        try:
            cert = x509.load_der_x509_certificate(_der_length(bytes(item.CertificateOfSigner)))
            stream, covered = _mac_stream(ds, tags, item)
            digest = _digest(check.mac_algorithm, stream)
            algorithm = _hash_algorithm(check.mac_algorithm)
        except (SignatureError, ValueError, KeyError, AttributeError) as error:
            check.problems.append(f"cannot check: {type(error).__name__}: {error}")
            continue
        check.signed_elements = len(covered)
        check.signer = cert.subject.rfc4514_string()
        key = cert.public_key()
        signature = bytes(item.get("Signature", b""))
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(_der_length(signature), digest, ec.ECDSA(utils.Prehashed(algorithm)))
            else:
                check.problems.append("unsupported key type in the certificate")
                continue
        except InvalidSignature:
            check.problems.append("signature does not match the signed data (altered)")
            continue
        check.valid = True
        if anchors is not None:
            check.trusted = any(_issued_by(cert, anchor) for anchor in anchors)
    return checks


def _issued_by(cert: Any, anchor: Any) -> bool:
    """The certificate is the trusted one, or is signed directly by it."""
    if cert == anchor:
        return True
    try:
        cert.verify_directly_issued_by(anchor)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError
        return False
    return True


def verify_file(path: Path, trusted_pem: list[bytes] | None = None) -> list[SignatureCheck]:
    import pydicom

    return verify_dataset(pydicom.dcmread(path), trusted_pem)


def _sign_one(path: str, private_pem: bytes, certificate_pem: bytes) -> bool:
    """Sign one released file in place (atomic replace); False when it is not DICOM."""
    import os

    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception:  # noqa: BLE001 - not DICOM: nothing to sign
        return False
    if any(c.valid and c.trusted for c in verify_dataset(ds, [certificate_pem])):
        return True  # already signed with this certificate (a resumed run): keep the bytes
    sign_dataset(ds, private_pem, certificate_pem)
    tmp = str(Path(path).with_name(f".rg-sign-{Path(path).name}.part"))
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)
    return True


def sign_tree(root: Path, signer: object, workers: int = 1) -> int:
    """Add a radguard DICOM signature to every DICOM file under ``root``; returns the count."""
    from radguard.govern.keys import Signer
    from radguard.govern.release import MANIFEST, SIGNATURE

    assert isinstance(signer, Signer)
    if signer.certificate_pem is None:
        raise SignatureError("DICOM signatures need the release key's X.509 certificate")
    paths = [
        str(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, SIGNATURE) and not p.name.startswith(".")
    ]
    keys = [signer.private_pem] * len(paths), [signer.certificate_pem] * len(paths)
    if workers > 1 and len(paths) > 8:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(_sign_one, paths, *keys, chunksize=16))
    else:
        done = [_sign_one(p, k, c) for p, k, c in zip(paths, *keys, strict=True)]
    return sum(done)


INTAKE_NOTE = "input signature: "  # prefix of the run-record note written by intake_note


def intake_note(ds: Dataset) -> str | None:
    """What the original carried, for the run records: None when it had no signature.

    The note starts with ``INTAKE_NOTE`` and then ``valid``, ``invalid`` or ``unchecked``, so
    :func:`intake_verdict` reads it back without parsing prose.
    """
    if "DigitalSignaturesSequence" not in ds:
        return None
    try:
        checks = verify_dataset(ds)
    except Exception as error:  # noqa: BLE001 - a malformed signature is recorded, not fatal
        return f"{INTAKE_NOTE}unchecked: could not be checked ({type(error).__name__})"
    valid = sum(c.valid for c in checks)
    if valid == len(checks):
        return f"{INTAKE_NOTE}valid: {valid} DICOM signature(s) before de-identification"
    return (
        f"{INTAKE_NOTE}invalid: {len(checks) - valid} of {len(checks)} DICOM signature(s) "
        "INVALID (the file was altered after signing)"
    )


def intake_verdict(note: str) -> str | None:
    """``valid`` / ``invalid`` / ``unchecked`` from a note of :func:`intake_note`, else None."""
    if not note.startswith(INTAKE_NOTE):
        return None
    return note[len(INTAKE_NOTE) :].split(":", 1)[0]
