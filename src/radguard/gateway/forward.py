"""Destinations: send one released study by C-STORE, STOW-RS, or into a folder.

Each sender takes the study's files and either returns (every instance accepted) or raises
:class:`ForwardError` with a reason safe to record (no PHI: released files hold none, and
messages from peers are cut short). Delivery is at-least-once; since SOP Instance UIDs are
deterministic, a study sent twice lands once in the archive.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError
from radguard.gateway.config import AuthKind, Destination, DestinationKind, TlsSettings

Sender = Callable[[list[Path]], None]

# PS3.4 Annex B.2.3: C-STORE statuses that mean the instance was stored.
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255


class ForwardError(RadguardError):
    """A delivery attempt failed; ``reason`` says why (recorded, retried, then dead letter)."""


def sender_for(destination: Destination, calling_ae_title: str) -> Sender:
    """The function that delivers a study to ``destination``."""
    if destination.kind == DestinationKind.DIMSE:
        return lambda files: send_dimse(destination, files, calling_ae_title)
    if destination.kind == DestinationKind.STOWRS:
        return lambda files: send_stow(destination, files)
    return lambda files: send_folder(destination, files)


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A TLS client context for DICOM associations (PS3.15 B.1: TLS 1.2 or later)."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca) if tls.ca else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify_peer:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A TLS server context; with ``require_client_cert`` peers must present a CA-signed cert."""
    context = ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca) if tls.ca else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


def _meta(path: Path) -> tuple[str, str]:
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def _context_groups(files: list[Path]) -> Iterator[tuple[list[tuple[str, str]], list[Path]]]:
    """Split the files so that each association needs at most 128 presentation contexts."""
    by_pair: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        by_pair.setdefault(_meta(path), []).append(path)
    pairs = sorted(by_pair)
    for start in range(0, len(pairs), _MAX_CONTEXTS):
        chunk = pairs[start : start + _MAX_CONTEXTS]
        yield chunk, [p for pair in chunk for p in by_pair[pair]]


def send_dimse(destination: Destination, files: list[Path], calling_ae_title: str) -> None:
    """C-STORE every file to a DICOM node over one association (more if >128 contexts)."""
    from pynetdicom import AE

    for pairs, group in _context_groups(files):
        ae = AE(ae_title=calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = destination.timeout_s
        ae.connection_timeout = destination.timeout_s
        for sop_class, syntax in pairs:
            offered = [syntax]
            if syntax in _UNCOMPRESSED:
                offered += [s for s in _UNCOMPRESSED[:2] if s != syntax]
            ae.add_requested_context(sop_class, offered)
        kwargs: dict[str, Any] = {"ae_title": destination.ae_title}
        if destination.tls is not None:
            kwargs["tls_args"] = (client_ssl_context(destination.tls), destination.host)
        assoc = ae.associate(destination.host, destination.port, **kwargs)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted or unreachable"
            raise ForwardError(
                f"association with {destination.ae_title}@{destination.host}:"
                f"{destination.port} {why}"
            )
        try:
            for path in group:
                try:
                    status = assoc.send_c_store(path)
                except (ValueError, RuntimeError) as error:
                    raise ForwardError(
                        f"C-STORE of {path.name} not possible: {str(error)[:160]}"
                    ) from error
                code = getattr(status, "Status", None)
                if code is None:
                    raise ForwardError(
                        f"C-STORE of {path.name}: no response (connection lost or timed out)"
                    )
                if int(code) not in _STORED:
                    raise ForwardError(f"C-STORE of {path.name} refused: status 0x{int(code):04X}")
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


def dicomweb_session(
    auth_kind: AuthKind, username: str, secret: str, ca_bundle: Path | None
) -> Any:
    """A requests session with basic or bearer authentication and the CA bundle to trust."""
    import requests

    session = requests.Session()
    if auth_kind == AuthKind.BASIC:
        session.auth = (username, secret)
    elif auth_kind == AuthKind.BEARER:
        session.headers["Authorization"] = f"Bearer {secret}"
    if ca_bundle is not None:
        session.verify = str(ca_bundle)
    return session


def dicomweb_client(
    url: str, auth_kind: AuthKind, username: str, secret: str, ca_bundle: Path | None
) -> Any:
    from dicomweb_client.api import DICOMwebClient

    session = dicomweb_session(auth_kind, username, secret, ca_bundle)
    return DICOMwebClient(url=url, session=session)


def send_stow(destination: Destination, files: list[Path], chunk: int = 32) -> None:
    """STOW-RS the files in requests of ``chunk`` instances; any failed instance fails it."""
    import pydicom
    import requests

    client = dicomweb_client(
        destination.url,
        destination.auth.kind,
        destination.auth.username,
        destination.auth.secret(),
        destination.ca_bundle,
    )
    for start in range(0, len(files), chunk):
        datasets = [pydicom.dcmread(path) for path in files[start : start + chunk]]
        try:
            response = client.store_instances(datasets)
        except requests.HTTPError as error:
            code = error.response.status_code if error.response is not None else "?"
            raise ForwardError(f"STOW-RS to {destination.url} failed: HTTP {code}") from error
        except (requests.RequestException, OSError) as error:
            raise ForwardError(
                f"STOW-RS to {destination.url} failed: {type(error).__name__}"
            ) from error
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            raise ForwardError(
                f"STOW-RS to {destination.url}: {len(failed)} instance(s) refused by the server"
            )


def send_folder(destination: Destination, files: list[Path]) -> None:
    """Copy files to ``<path>/<study>/<series>/<instance>.dcm`` atomically; a study sent
    again (the modality re-sent it) replaces the earlier copy of each instance."""
    assert destination.path is not None
    for source in files:
        relative = Path(*source.parts[-3:])  # <study>/<series>/<instance>.dcm
        target = destination.path / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and target.read_bytes() == source.read_bytes():
                continue
            fd, tmp = tempfile.mkstemp(prefix=".rg-", suffix=".part", dir=target.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(source.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as error:
            raise ForwardError(
                f"cannot write into {destination.path}: {type(error).__name__} ({error.strerror})"
            ) from error
