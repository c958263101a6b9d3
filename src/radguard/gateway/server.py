"""The running gateway: a DICOM node that spools, a batcher that de-identifies, forwarders.

Threads: pynetdicom's association server (one thread per association), one processor (quiet
studies -> release batch -> pipeline -> outboxes), one forwarder per destination (outbox ->
peer, with retries and backoff, then the dead letter folder), and the HTTP endpoint. All state
lives in the spool, so the process can be killed at any moment and started again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radguard.deid.keys import load_key
from radguard.errors import log_failure
from radguard.gateway.config import Destination, GatewayConfig
from radguard.gateway.events import Hooks, ReleasedFile, StudyForwarded
from radguard.gateway.forward import ForwardError, Sender, sender_for, server_ssl_context
from radguard.gateway.ledger import ledger_hook
from radguard.gateway.metrics import Metrics, serve_http
from radguard.gateway.process import PipelineSettings, die_with_parent, process_batch_isolated
from radguard.gateway.spool import Spool, read_json, remove_tree, write_json_atomic
from radguard.settings import load_policy

_log = logging.getLogger("radguard.gateway")

# PS3.4 Annex B.2.3 C-STORE failure statuses.
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC210
_STATUS_EVERY_S = 1.0


class Gateway:
    """``radguard serve``: build from a validated config, ``start()``, ``stop()``."""

    def __init__(
        self,
        config: GatewayConfig,
        hooks: Hooks | None = None,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self.config = config
        self.policy = load_policy(config.policy)
        self.keyring = load_key(config.key_file)  # refuses missing or world-readable keys
        self.spool = Spool(config.spool, self.keyring.derive("gateway-spool"))
        self.metrics = Metrics()
        self.hooks = hooks or Hooks()
        recorder = ledger_hook(config, self.keyring)
        if recorder is not None:
            self.hooks.add(recorder, recording=config.ledger.required)
        self.senders = senders or {
            d.name: sender_for(d, d.calling_ae_title or config.ae_title)
            for d in config.destinations
        }
        self.settings = PipelineSettings(
            self.policy,
            self.keyring,
            config.destinations,
            config.workers,
            config.max_prosecutor,
            config.verify,
            patient_hashes=config.ledger.enabled,
            purpose=config.consent.purpose,
            require_consent=config.consent.require_consent,
            consent_registry=str(config.consent.registry or ""),
        )
        if config.consent.purpose:
            from radguard.govern.consent import Purpose

            Purpose.parse(config.consent.purpose)  # an unknown purpose refuses to start
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._pool: Any = None  # the pipeline's worker process (started with the first batch)
        self._http: Any = None
        self._last_errors: dict[str, str] = {}
        self._inflight: set[Path] = set()
        self._rejected: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.last_release = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.spool.open(exclusive=True)
        self._start_scp()
        self._spawn("radguard-processor", self._process_loop)
        for destination in self.config.destinations:
            for index in range(destination.concurrency):
                name = f"radguard-forward-{destination.name}-{index}"
                self._spawn(name, self._forward_loop, destination)
        if self.config.http.port:
            self._http = serve_http(
                self.config.http.host,
                self.config.http.port,
                self.metrics,
                self.spool.depth,
                self.health,
            )
        _log.info(
            "gateway %s listening on %s:%d", self.config.ae_title, self.config.host, self.port
        )

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._pool is not None:
            # A batch in progress is abandoned (run again from the spool at the next start).
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=60)
        if self._http is not None:
            self._http.shutdown()
        self._write_status()
        self.spool.close()

    def wait(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(0.5)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def health(self) -> tuple[bool, dict[str, Any]]:
        dead = [t.name for t in self._threads if not t.is_alive()]
        ok = not dead and not self._stop.is_set()
        return ok, {
            "status": "ok" if ok else "failing",
            "dead_threads": dead,
            "queue": self.spool.depth(),
            "uptime_s": round(time.time() - self.metrics.started, 1),
        }

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            while not self._stop.is_set():
                try:
                    target(*args)
                    return
                except Exception as error:  # noqa: BLE001 - log, wait, go on: the spool keeps it
                    log_failure(_log, f"{name} failed; restarting it in 5 s", error)
                    self.metrics.inc("internal_errors", name)
                    self._stop.wait(5)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- receiving -----------------------------------------------------------------------------
    def _start_scp(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.config.ae_title)
        ae.require_calling_aet = sorted(self.config.allowed_calling_ae_titles)
        ae.require_called_aet = True
        ae.maximum_associations = self.config.max_associations
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        tls = server_ssl_context(self.config.tls) if self.config.tls else None
        self._server = ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            ssl_context=tls,
            evt_handlers=handlers,
        )

    def _on_store(self, event: Any) -> int:
        """Spool the instance durably, then answer: success only once it is on disk."""
        try:
            data = event.encoded_dataset()
        except Exception:  # noqa: BLE001 - nothing usable arrived
            self.metrics.inc("failed", "received")
            return _CANNOT_UNDERSTAND
        try:
            ds = event.dataset
            study = str(ds.StudyInstanceUID or "")
            sop = str(ds.SOPInstanceUID or "")
            if not study or not sop:
                raise ValueError("missing Study or SOP Instance UID")
        except Exception as error:  # noqa: BLE001 - malformed: keep it, refuse it, report it
            reason = f"refused at reception: cannot read the instance ({type(error).__name__})"
            with contextlib.suppress(OSError):
                self.spool.store_rejected(data, reason)
            self.metrics.inc("failed", "received")
            return _CANNOT_UNDERSTAND
        try:
            self.spool.store(data, study, sop)
        except OSError as error:
            _log.error("spool write failed: %s", error.strerror)
            self.metrics.inc("failed", "spool")
            return _OUT_OF_RESOURCES
        self.metrics.inc("received")
        return 0x0000

    def _on_rejected(self, event: Any) -> None:
        title = str(getattr(event.assoc.requestor, "ae_title", "") or "").strip()
        address = str(getattr(event.assoc.requestor, "address", ""))
        self.metrics.inc("rejected_associations")
        record = {"calling_ae_title": title, "address": address, "at": _now()}
        with self._lock:
            self._rejected = [*self._rejected[-19:], record]
            try:  # kept across restarts for `serve status`
                with (self.spool.root / "records" / "rejected.jsonl").open("a") as log:
                    log.write(json.dumps(record) + "\n")
            except OSError:
                pass
        _log.warning("association from %r at %s rejected", title, address)

    # -- processing ----------------------------------------------------------------------------
    def _process_loop(self) -> None:
        poll = max(0.05, min(1.0, self.config.quiet_period_s / 4))
        last_status = 0.0
        while not self._stop.is_set():
            for batch in self.spool.batches():  # unfinished batches of an earlier run first
                self._run_batch(batch)
            now = time.time()
            due = now - self.last_release >= self.config.release_interval_s
            if due:
                quiet = self.spool.quiet_studies(self.config.quiet_period_s)
                if quiet:
                    batch_id = time.strftime("b%Y%m%dT%H%M%S", time.gmtime()) + (
                        f"-{int(now * 1000) % 100000:05d}"
                    )
                    batch = self.spool.take(quiet, batch_id, self.config.quiet_period_s)
                    self.last_release = now
                    self._run_batch(batch)
            if time.monotonic() - last_status > _STATUS_EVERY_S:
                self._write_status()
                last_status = time.monotonic()
            self._stop.wait(poll)

    def _run_batch(self, batch: Path) -> None:
        """Run a batch in the worker process; merge its counters; log what happened."""
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
        future = self._pool.submit(process_batch_isolated, self.spool.root, batch, self.settings)
        try:
            outcome, counters = future.result()
        except BrokenProcessPool:
            self._pool = None  # a worker died (killed, or a decoder crashed): a new one next
            if self._stop.is_set():
                return  # stopping: the batch runs again at the next start
            raise
        except CancelledError:
            return  # stopping
        for (name, label), value in counters.items():
            self.metrics.inc(name, label, value)
        self.metrics.inc("batches")
        _log.info(
            "batch %s: %d studies, %d released (%d instances), %d quarantined%s; "
            "deid %.1f s, verify %.1f s",
            outcome.batch,
            outcome.studies,
            outcome.released_studies,
            outcome.released_instances,
            outcome.quarantined,
            ", withheld by the risk gate" if outcome.withheld else "",
            outcome.deid_s,
            outcome.verify_s,
        )

    # -- forwarding ----------------------------------------------------------------------------
    def _forward_loop(self, destination: Destination) -> None:
        while not self._stop.is_set():
            busy = False
            for entry, meta in self.spool.entries(destination.name):
                if self._stop.is_set():
                    return
                if float(meta.get("next_attempt", 0.0)) > time.time():
                    continue
                with self._lock:  # each entry is delivered by one forwarder at a time
                    if entry in self._inflight:
                        continue
                    self._inflight.add(entry)
                try:
                    if (entry / "entry.json").exists():  # not finished by another forwarder
                        meta = read_json(entry / "entry.json") or meta
                        self._deliver(destination, entry, meta)
                finally:
                    with self._lock:
                        self._inflight.discard(entry)
                busy = True
            if not busy:
                self._stop.wait(0.25)

    def _deliver(self, destination: Destination, entry: Path, meta: dict[str, Any]) -> None:
        """One attempt: send (unless sent already), record (ledger), then drop the entry."""
        files = [entry / f["path"] for f in meta["files"]]
        if not meta.get("sent"):
            try:
                self.senders[destination.name](files)
            except Exception as error:  # noqa: BLE001 - every failure is retried, then dead letter
                reason = (
                    str(error) if isinstance(error, ForwardError) else f"{type(error).__name__}"
                )
                self._failed(destination, entry, meta, reason[:300])
                return
            meta["sent"] = True
            meta["sent_at"] = time.time()
            write_json_atomic(entry / "entry.json", meta)
            self.metrics.inc("forwarded", destination.name, len(files))
            self.metrics.inc("forwarded_studies", destination.name)
            self.metrics.observe_latency(time.time() - float(meta.get("last_arrival", time.time())))
        event = StudyForwarded(
            destination=destination.name,
            recipient=destination.recipient,
            purpose=destination.purpose,
            study=str(meta["study"]),
            files=tuple(
                ReleasedFile(f["path"], f["sop_instance_uid"], f["sha256"]) for f in meta["files"]
            ),
            summary={
                **meta.get("summary", {}),
                "attempts": int(meta.get("attempts", 0)) + 1,
                "sent_at": meta.get("sent_at"),
                "instances": len(files),
            },
        )
        try:
            self.hooks.record(event)
        except Exception as error:  # noqa: BLE001 - not recorded: keep the entry, retry the hook
            self.metrics.inc("failed", "ledger")
            meta["last_error"] = f"sent, but recording failed: {type(error).__name__}: {error}"[
                :300
            ]
            meta["next_attempt"] = time.time() + self.config.retry.backoff(
                int(meta.get("attempts", 0)) + 1
            )
            meta["attempts"] = int(meta.get("attempts", 0)) + 1
            write_json_atomic(entry / "entry.json", meta)
            return
        self.hooks.emit(event)
        with (self.spool.root / "records" / "forwarded.jsonl").open("a", encoding="utf-8") as log:
            log.write(
                json.dumps(
                    {
                        "at": _now(),
                        "destination": destination.name,
                        "recipient": destination.recipient,
                        "study": event.study,
                        "instances": len(files),
                        "batch": meta.get("summary", {}).get("batch", ""),
                        "attempts": int(meta.get("attempts", 0)) + 1,
                        # seconds from the study's first / last instance received to delivered
                        "latency_first_s": round(
                            float(meta.get("sent_at", 0)) - float(meta.get("first_arrival", 0)), 3
                        ),
                        "latency_last_s": round(
                            float(meta.get("sent_at", 0)) - float(meta.get("last_arrival", 0)), 3
                        ),
                    }
                )
                + "\n"
            )
        remove_tree(entry)
        with self._lock:
            self._last_errors.pop(destination.name, None)

    def _failed(
        self, destination: Destination, entry: Path, meta: dict[str, Any], reason: str
    ) -> None:
        attempts = int(meta.get("attempts", 0)) + 1
        meta["attempts"] = attempts
        meta["last_error"] = reason
        self.metrics.inc("delivery_attempts_failed", destination.name)
        with self._lock:
            self._last_errors[destination.name] = reason
        if attempts >= self.config.retry.max_attempts:
            write_json_atomic(entry / "entry.json", meta)
            self.spool.dead_letter(
                entry,
                f"forward-{destination.name}",
                entry.name,
                {
                    "reason": f"delivery failed {attempts} times; last error: {reason}",
                    "destination": destination.name,
                    "study": meta["study"],
                    "files": len(meta["files"]),
                },
            )
            self.metrics.inc("failed", "forward", len(meta["files"]))
            _log.error("study dead-lettered for %s after %d attempts", destination.name, attempts)
            return
        meta["next_attempt"] = time.time() + self.config.retry.backoff(attempts)
        write_json_atomic(entry / "entry.json", meta)

    # -- status --------------------------------------------------------------------------------
    def _write_status(self) -> None:
        with self._lock:
            rejected = list(self._rejected)
            errors = dict(self._last_errors)
        try:
            write_json_atomic(
                self.spool.root / "status.json",
                {
                    "at": _now(),
                    "ae_title": self.config.ae_title,
                    "port": self.port,
                    "http_port": self._http.server_address[1] if self._http else 0,
                    "metrics": self.metrics.snapshot(),
                    "queue": self.spool.depth(),
                    "rejected_associations": rejected,
                    "destination_errors": errors,
                },
            )
        except OSError as error:
            _log.error("cannot write status.json: %s", error.strerror)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
