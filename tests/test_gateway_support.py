"""Helpers for the gateway tests: real Orthanc servers, free ports, radguard serve processes.

Orthanc (Debian packages orthanc + orthanc-dicomweb) is started with its own JSON config on
free loopback ports and a temporary storage folder; it never touches a system Orthanc that
may listen on 4242/8042. Under CI=true a missing Orthanc or plugin fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import IN_CI, require_tool

ORTHANC_PLUGIN_DIRS = (
    Path("/usr/share/orthanc/plugins"),
    Path("/usr/lib/orthanc/plugins"),
    Path("/usr/local/share/orthanc/plugins"),
)
REPO = Path(__file__).resolve().parents[1]
RADGUARD = [sys.executable, "-m", "radguard.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dicomweb_plugin() -> Path:
    for folder in ORTHANC_PLUGIN_DIRS:
        path = folder / "libOrthancDicomWeb.so"
        if path.exists():
            return path
    if IN_CI:
        pytest.fail("the Orthanc DICOMweb plugin (orthanc-dicomweb) is required in CI")
    pytest.skip("orthanc-dicomweb not installed")
    raise AssertionError


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Orthanc:
    """One Orthanc process with DICOMweb, on its own ports and storage."""

    def __init__(
        self,
        folder: Path,
        aet: str,
        modalities: dict[str, list[Any]] | None = None,
        users: dict[str, str] | None = None,
        dicom_port: int = 0,
    ) -> None:
        self.binary = require_tool("Orthanc")
        self.folder = folder
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = dicom_port or free_port()
        self.users = users or {}
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": aet,
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomCheckCalledAet": False,
            "UnknownSopClassAccepted": True,
            "DicomModalities": modalities or {},
            "StableAge": 1,
            "HttpServerEnabled": True,
            "ConcurrentJobs": 2,
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def _auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items())) if self.users else None

    def start(self) -> Orthanc:
        log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, str(self.folder / "orthanc.json")], stdout=log, stderr=log
        )
        wait_for(self._up, 30, f"Orthanc {self.aet} to start")
        return self

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(
                f"Orthanc {self.aet} exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}"
            )
        try:
            return requests.get(f"{self.url}/system", auth=self._auth(), timeout=1).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def instances(self) -> list[str]:
        """SOP Instance UIDs held, through QIDO-RS (DICOMweb), one per stored instance."""
        response = requests.get(
            f"{self.dicomweb}/instances",
            params={"includefield": "00080018", "limit": "100000"},
            auth=self._auth(),
            timeout=30,
        )
        response.raise_for_status()
        if not response.content:
            return []
        return [item["00080018"]["Value"][0] for item in response.json()]

    def upload(self, files: list[Path]) -> None:
        for path in files:
            response = requests.post(
                f"{self.url}/instances", data=path.read_bytes(), auth=self._auth(), timeout=30
            )
            response.raise_for_status()


class Serve:
    """``radguard serve --config FILE`` as a real process (so it can be SIGKILLed)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> Serve:
        handle = self.log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [*RADGUARD, "serve", "--config", str(self.config)],
            stdout=handle,
            stderr=handle,
            cwd=REPO,
            env=env,
        )
        wait_for(lambda: self._listening(port), 60, "radguard serve to listen")
        return self

    def _listening(self, port: int) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"radguard serve exited: {self.log.read_text()[-3000:]}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def kill(self) -> None:
        """SIGKILL the gateway; its pipeline worker must not survive it (no orphan batch)."""
        assert self.process is not None
        children = _children(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        wait_for(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 20,
                 "the gateway's worker process to die with it")  # fmt: skip

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def radguard(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*RADGUARD, *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"radguard {' '.join(args)}: {result.stdout}\n{result.stderr}")
    return result


# dcmtk's storescu proposes one compressed transfer syntax per association, like a modality
# configured for it: the files are sent in one run per transfer syntax.
_STORESCU_SYNTAX_FLAGS = {
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def storescu(
    port: int,
    files: list[Path],
    aet: str = "MODALITY",
    called: str = "RADGUARD",
    extra: tuple[str, ...] = (),
) -> list[subprocess.CompletedProcess[str]]:
    """Send ``files`` with dcmtk's storescu (one run per transfer syntax); return the runs."""
    from pydicom.filereader import read_file_meta_info

    binary = require_tool("storescu")
    groups: dict[str, list[str]] = {}
    for path in files:
        syntax = str(read_file_meta_info(path).TransferSyntaxUID)
        groups.setdefault(_STORESCU_SYNTAX_FLAGS.get(syntax, "-xe"), []).append(str(path))
    runs = []
    head = [binary, "-aet", aet, "-aec", called, "-R", "-nh"]
    for flag, paths in sorted(groups.items()):
        runs.append(
            subprocess.run(
                [*head, flag, *extra, "127.0.0.1", str(port), *paths],
                capture_output=True,
                text=True,
                timeout=300,
            )
        )
    return runs


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
