"""Signing keys of a site: ``ledger`` (Ed25519, signs tree heads) and ``release`` (ECDSA P-256
or RSA with a self-signed X.509 certificate: signs release manifests and DICOM files).

Layout: ``<home>/keys/<kind>/CURRENT`` names the current key id; ``<id>.key.pem`` (0600) is
the private key of the current key only; ``<id>.pub.pem`` (and ``<id>.cert.pem`` for release
keys) stay for every key ever used, so rotating keeps old heads and releases verifiable. The
pseudonym key is not a signing key and is never rotated (see ``radguard.deid.keys``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from radguard.deid.keys import default_key_path
from radguard.errors import KeyFileError


class KeyKind(Enum):
    PSEUDONYM = "pseudonym"
    LEDGER = "ledger"
    RELEASE = "release"

    @classmethod
    def parse(cls, value: str | KeyKind) -> KeyKind:
        if isinstance(value, KeyKind):
            return value
        try:
            return cls(value)
        except ValueError as error:
            raise KeyFileError(
                f"unknown key kind {value!r} (pseudonym, ledger or release)"
            ) from error


class Algorithm(Enum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256-sha256"
    RSA = "rsa-pkcs1v15-sha256"


def keys_home(home: Path | None = None) -> Path:
    """The folder holding the site's signing keys (beside the default pseudonym key)."""
    base: Path = home or default_key_path().parent
    return Path(base, "keys")


def _kind_dir(kind: KeyKind, home: Path | None) -> Path:
    if kind is KeyKind.PSEUDONYM:
        raise KeyFileError("the pseudonym key is not a signing key (see 'radguard key show')")
    return keys_home(home) / str(kind.value)


def key_id_of(public_key: Any) -> str:
    """Stable identifier of a public key: the first 16 hex digits of sha256(DER)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def algorithm_of(public_key: Any) -> Algorithm:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return Algorithm.ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return Algorithm.ECDSA_P256
    if isinstance(public_key, rsa.RSAPublicKey):
        return Algorithm.RSA
    raise KeyFileError("unsupported public key type")


@dataclass(frozen=True)
class Signer:
    """A private signing key in memory (never printed: repr shows the key id only)."""

    key_id: str
    algorithm: Algorithm
    private_pem: bytes = field(repr=False)
    certificate_pem: bytes | None = field(default=None, repr=False)
    public_pem: bytes = field(default=b"", repr=False)

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        key = _private_key(self.private_pem)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        raise KeyFileError("unsupported private key type")


def verify_signature(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with the PEM public key (or cert)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = load_public(public_pem)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=16)
def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


@functools.lru_cache(maxsize=64)
def load_public(pem: bytes) -> Any:
    """A public key from a PEM public key or X.509 certificate (parsed once per process)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        if b"CERTIFICATE" in pem:
            return x509.load_pem_x509_certificate(pem).public_key()
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise KeyFileError("not a PEM public key or certificate") from error


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _generate(kind: KeyKind, algorithm: Algorithm, subject: str) -> tuple[bytes, bytes, bytes]:
    """(private PEM, public PEM, certificate PEM or b'')."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import NameOID

    key: Any
    if algorithm is Algorithm.ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm is Algorithm.ECDSA_P256:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certificate = b""
    if kind is KeyKind.RELEASE:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        now = _dt.datetime.now(_dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        certificate = cert.public_bytes(serialization.Encoding.PEM)
    return private, public, certificate


def new_signing_key(
    kind: KeyKind | str,
    home: Path | None = None,
    *,
    algorithm: Algorithm | str | None = None,
    subject: str = "radguard release signer",
    rotate: bool = False,
) -> str:
    """Create the kind's key (or, with ``rotate``, replace the current one); returns its id.

    Without ``rotate`` an existing key is never replaced. Rotating keeps the old public key
    (and certificate) and removes the old private key.
    """
    kind = KeyKind.parse(kind)
    folder = _kind_dir(kind, home)
    current = folder / "CURRENT"
    if current.exists() and not rotate:
        raise KeyFileError(
            f"a {kind.value} key exists ({current.read_text().strip()}); "
            f"use 'radguard key rotate --kind {kind.value}' to replace it"
        )
    if rotate and not current.exists():
        raise KeyFileError(f"no {kind.value} key to rotate (create one with 'key new')")
    if algorithm is None:
        chosen = Algorithm.ED25519 if kind is KeyKind.LEDGER else Algorithm.ECDSA_P256
    else:
        chosen = Algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    if kind is KeyKind.RELEASE and chosen is Algorithm.ED25519:
        raise KeyFileError("release keys sign DICOM files: use ECDSA P-256 or RSA")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    private, public, certificate = _generate(kind, chosen, subject)
    key_id = key_id_of(load_public(public))
    _write_private(folder / f"{key_id}.key.pem", private)
    _write_public(folder / f"{key_id}.pub.pem", public)
    if certificate:
        _write_public(folder / f"{key_id}.cert.pem", certificate)
    old = current.read_text().strip() if current.exists() else ""
    _write_public(current, (key_id + "\n").encode())
    if old and old != key_id:
        (folder / f"{old}.key.pem").unlink(missing_ok=True)
    return key_id


def current_key_id(kind: KeyKind | str, home: Path | None = None) -> str:
    kind = KeyKind.parse(kind)
    current = _kind_dir(kind, home) / "CURRENT"
    if not current.exists():
        raise KeyFileError(
            f"no {kind.value} key (create one with 'radguard key new --kind {kind.value}')"
        )
    return current.read_text().strip()


def load_signer(kind: KeyKind | str, home: Path | None = None) -> Signer:
    """The current private key of ``kind``; refuses a key file others can read."""
    kind = KeyKind.parse(kind)
    folder = _kind_dir(kind, home)
    key_id = current_key_id(kind, home)
    path = folder / f"{key_id}.key.pem"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        raise KeyFileError(f"{path}: private key missing (restore it from backup)") from error
    if mode & 0o077:
        raise KeyFileError(f"{path}: key file is accessible to other users; chmod 600 it")
    cert_path = folder / f"{key_id}.cert.pem"
    public = (folder / f"{key_id}.pub.pem").read_bytes()
    return Signer(
        key_id,
        algorithm_of(load_public(public)),
        path.read_bytes(),
        cert_path.read_bytes() if cert_path.exists() else None,
        public,
    )


def public_keys(kind: KeyKind | str, home: Path | None = None) -> dict[str, bytes]:
    """Every public key (current and retired) of ``kind``: key id -> PEM."""
    kind = KeyKind.parse(kind)
    folder = _kind_dir(kind, home)
    found: dict[str, bytes] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.pub.pem")):
            found[path.name.split(".")[0]] = path.read_bytes()
    return found


def certificates(home: Path | None = None) -> list[bytes]:
    """Every release certificate (current and retired), PEM."""
    folder = _kind_dir(KeyKind.RELEASE, home)
    return [p.read_bytes() for p in sorted(folder.glob("*.cert.pem"))] if folder.is_dir() else []
