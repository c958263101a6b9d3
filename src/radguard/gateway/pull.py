"""``radguard pull``: fetch studies from a PACS and run them through the same pipeline.

Sources: DICOMweb (QIDO-RS to find studies, WADO-RS to retrieve them) or DIMSE (C-FIND, then
C-GET on the same association, or C-MOVE to a storage node started here for the transfer).
Originals are written to ``OUT.run/pulled/`` (mode 0700), de-identified into ``OUT`` by
``run_deid`` (risk gate included), checked by the verifier against them, and removed
afterwards unless asked to keep them.
"""

from __future__ import annotations

import enum
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.errors import RadguardError
from radguard.gateway.config import AuthKind, TlsSettings
from radguard.gateway.forward import client_ssl_context


class SourceKind(enum.Enum):
    DICOMWEB = "dicomweb"
    DIMSE = "dimse"


class Retrieve(enum.Enum):
    GET = "get"  # C-GET: the instances come back on the query association
    MOVE = "move"  # C-MOVE: the PACS opens an association to our temporary storage node


@dataclass(frozen=True)
class PullSource:
    """Where to pull from; only the fields of its kind are used."""

    kind: SourceKind
    url: str = ""
    auth: AuthKind = AuthKind.NONE
    username: str = ""
    secret: str = field(default="", repr=False)
    ca_bundle: Path | None = None
    host: str = ""
    port: int = 0
    called_ae_title: str = ""
    calling_ae_title: str = "RADGUARD"
    retrieve: Retrieve = Retrieve.GET
    move_port: int = 0
    tls: TlsSettings | None = None
    timeout_s: float = 60.0


@dataclass
class PullResult:
    studies: list[str] = field(default_factory=list)
    fetched: int = 0
    failed_studies: dict[str, str] = field(default_factory=dict)
    summary: Any = None
    verify: Any = None

    @property
    def exit_code(self) -> int:
        bad = self.failed_studies or (self.summary is not None and self.summary.exit_code)
        return 1 if bad or (self.verify is not None and not self.verify.passed) else 0


Writer = Callable[[bytes], None]


def find_studies(source: PullSource, query: dict[str, str]) -> list[str]:
    """Study Instance UIDs matching ``query`` (DICOM keywords -> values, wildcards allowed)."""
    if source.kind == SourceKind.DICOMWEB:
        client = _web_client(source)
        found = client.search_for_studies(search_filters=dict(query), get_remaining=True)
        uids: list[str] = []
        for item in found:
            values = item.get("0020000D", {}).get("Value", [])
            uids.extend(str(v) for v in values)
        return sorted(set(uids))
    return _c_find(source, query)


def fetch_study(source: PullSource, study_uid: str, folder: Path) -> int:
    """Write every instance of one study under ``folder``; return how many were written."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    count = 0
    lock = threading.Lock()

    def write(data: bytes) -> None:
        nonlocal count
        with lock:
            count += 1
            index = count
        (folder / f"{index:06d}.dcm").write_bytes(data)

    if source.kind == SourceKind.DICOMWEB:
        _wado(source, study_uid, write)
    elif source.retrieve == Retrieve.GET:
        _c_get(source, study_uid, write)
    else:
        _c_move(source, study_uid, write)
    return count


def pull(
    source: PullSource,
    out: Path,
    *,
    study_uids: list[str],
    query: dict[str, str],
    policy: Any,
    keyring: Any,
    workers: int = 1,
    max_risk: float | None = None,
    verify: bool = True,
    keep_originals: bool = False,
) -> PullResult:
    """Fetch the studies, de-identify them into ``out``, verify; return what happened."""
    from radguard.pipeline import RunOptions, run_deid, run_dir_for

    result = PullResult()
    uids = list(dict.fromkeys(study_uids))
    if query:
        uids += [u for u in find_studies(source, query) if u not in uids]
    if not uids:
        raise RadguardError("no study to pull: give --study UID or a --query that matches")
    result.studies = uids
    staging = run_dir_for(out.resolve()) / "pulled"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(staging.parent, 0o700)
    try:
        for uid in uids:
            folder = staging / hashlib.sha256(uid.encode()).hexdigest()[:16]
            try:
                fetched = fetch_study(source, uid, folder)
            except RadguardError as error:
                result.failed_studies[uid] = str(error)
                continue
            if not fetched:
                result.failed_studies[uid] = "the source returned no instance"
            result.fetched += fetched
        if result.fetched:
            result.summary = run_deid(
                RunOptions(staging, out, workers=workers, max_risk=max_risk), policy, keyring
            )
            if verify and result.summary.counts.get("released"):
                from radguard.verify import verify as verify_set

                result.verify = verify_set(out, staging, policy)
    finally:
        if not keep_originals:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return result


def _web_client(source: PullSource) -> Any:
    from radguard.gateway.forward import dicomweb_client

    return dicomweb_client(
        source.url, source.auth, source.username, source.secret, source.ca_bundle
    )


def _wado(source: PullSource, study_uid: str, write: Writer) -> None:
    import requests
    from pydicom.filebase import DicomBytesIO

    client = _web_client(source)
    try:
        for ds in client.iter_study(study_uid, media_types=(("application/dicom", "*"),)):
            buffer = DicomBytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            write(buffer.getvalue())
    except requests.HTTPError as error:
        code = error.response.status_code if error.response is not None else "?"
        raise RadguardError(f"WADO-RS retrieve failed: HTTP {code}") from error
    except requests.RequestException as error:
        raise RadguardError(f"WADO-RS retrieve failed: {type(error).__name__}") from error


def _associate(source: PullSource, ae: Any, **kwargs: Any) -> Any:
    if source.tls is not None:
        kwargs["tls_args"] = (client_ssl_context(source.tls), source.host)
    assoc = ae.associate(source.host, source.port, ae_title=source.called_ae_title, **kwargs)
    if not assoc.is_established:
        raise RadguardError(
            f"association with {source.called_ae_title}@{source.host}:{source.port} "
            f"{'rejected' if assoc.is_rejected else 'failed'}"
        )
    return assoc


def _c_find(source: PullSource, query: dict[str, str]) -> list[str]:
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind,
    )

    ae = AE(ae_title=source.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    for keyword, value in query.items():
        try:
            setattr(identifier, keyword, value)
        except (ValueError, TypeError) as error:
            raise RadguardError(f"--query {keyword}: {error}") from error
    assoc = _associate(source, ae)
    uids: set[str] = set()
    try:
        for status, found in assoc.send_c_find(
            identifier, StudyRootQueryRetrieveInformationModelFind
        ):
            code = int(getattr(status, "Status", -1))
            if code in (0xFF00, 0xFF01) and found is not None:
                uid = str(found.get("StudyInstanceUID", "") or "")
                if uid:
                    uids.add(uid)
            elif code not in (0x0000, 0xFF00, 0xFF01):
                raise RadguardError(f"C-FIND failed: status 0x{code & 0xFFFF:04X}")
    finally:
        assoc.release()
    return sorted(uids)


def _storage_handler(write: Writer) -> Callable[[Any], int]:
    def handle(event: Any) -> int:
        write(event.encoded_dataset())
        return 0x0000

    return handle


def _retrieve_identifier(study_uid: str) -> Any:
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    return identifier


def _check_retrieve(responses: Any, what: str) -> None:
    final = None
    for status, _ in responses:
        code = int(getattr(status, "Status", -1))
        if code in (0xFF00,):
            continue
        final = (code, int(getattr(status, "NumberOfFailedSuboperations", 0) or 0))
    if final is None:
        raise RadguardError(f"{what}: no final response (connection lost or timed out)")
    code, failed = final
    if code not in (0x0000, 0xB000) or failed:
        raise RadguardError(f"{what} failed: status 0x{code & 0xFFFF:04X}, {failed} failed")


def _study_sop_classes(source: PullSource, study_uid: str) -> list[str]:
    """SOP Classes in Study (0008,0062) of one study, by C-FIND (empty when not answered)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind,
    )

    ae = AE(ae_title=source.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    identifier.SOPClassesInStudy = ""
    assoc = _associate(source, ae)
    classes: set[str] = set()
    try:
        for status, found in assoc.send_c_find(
            identifier, StudyRootQueryRetrieveInformationModelFind
        ):
            if int(getattr(status, "Status", -1)) in (0xFF00, 0xFF01) and found is not None:
                value = found.get("SOPClassesInStudy", "") or ""
                values = [value] if isinstance(value, str) else list(value)
                classes.update(str(v) for v in values if str(v))
    finally:
        assoc.release()
    return sorted(classes)


def _c_get(source: PullSource, study_uid: str, write: Writer) -> None:
    """C-GET one study. The storage contexts offered are the study's own SOP classes, one
    context per transfer syntax, so the PACS can send each instance as it is stored (a PACS
    that cannot transcode, such as Orthanc, fails an instance whose syntax was not offered)."""
    from pynetdicom import AE, StoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelGet,
    )

    ae = AE(ae_title=source.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    classes = _study_sop_classes(source, study_uid)
    if classes and len(classes) * len(_RETRIEVE_SYNTAXES) <= _MAX_CONTEXTS - 1:
        for sop_class in classes:
            for syntax in _RETRIEVE_SYNTAXES:
                ae.add_requested_context(sop_class, [syntax])
    else:  # unknown or too many classes: one context per common class, several syntaxes
        classes = [str(c.abstract_syntax) for c in StoragePresentationContexts[:120]]
        for sop_class in classes:
            ae.add_requested_context(sop_class, _RETRIEVE_SYNTAXES)
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    assoc = _associate(
        source, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, _storage_handler(write))]
    )
    try:
        _check_retrieve(
            assoc.send_c_get(
                _retrieve_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet
            ),
            "C-GET",
        )
    finally:
        assoc.release()


def _c_move(source: PullSource, study_uid: str, write: Writer) -> None:
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelMove,
    )

    if not source.move_port:
        raise RadguardError("--retrieve move needs --move-port (where the PACS sends to)")
    ae = AE(ae_title=source.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = source.timeout_s
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    server: Any = ae.start_server(
        ("0.0.0.0", source.move_port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, _storage_handler(write))],  # type: ignore[list-item]
    )
    try:
        assoc = _associate(source, ae)
        try:
            _check_retrieve(
                assoc.send_c_move(
                    _retrieve_identifier(study_uid),
                    source.calling_ae_title,
                    StudyRootQueryRetrieveInformationModelMove,
                ),
                "C-MOVE",
            )
        finally:
            assoc.release()
    finally:
        server.shutdown()


_MAX_CONTEXTS = 128
_RETRIEVE_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
]
