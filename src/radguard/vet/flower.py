"""A Flower client mod that applies a :class:`Defence` to every update a client sends,
and a real federation on loopback (a Flower server and client processes over gRPC) to test
it. No Ray: the server and each client are ordinary processes (``flwr`` without the
``[simulation]`` extra is enough).

Use the mod in your own ClientApp: ``ClientApp(client_fn=..., mods=[DefenceMod(defence)])``.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from radguard.vet.data import Records, VetError
from radguard.vet.gradients import Defence, local_update
from radguard.vet.parallel import ModelFactory


class DefenceMod:
    """Flower mod: on TRAIN messages, replace the client's parameters by
    server parameters + defence(client - server)."""

    def __init__(self, defence: Defence, seed: int = 0) -> None:
        self.defence = defence
        self.rng = np.random.default_rng(seed)
        self.applied = 0

    def __call__(self, msg: Any, context: Any, call_next: Any) -> Any:
        from flwr.app.message_type import MessageType
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
        from flwr.compat.common import recorddict_compat as compat

        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        sent = parameters_to_ndarrays(fit_ins.parameters)
        out = call_next(msg, context)
        if out.has_error():
            return out
        fit_res = compat.recorddict_to_fitres(out.content, keep_input=True)
        trained = parameters_to_ndarrays(fit_res.parameters)
        update = [np.asarray(t - s, dtype=np.float32) for t, s in zip(trained, sent, strict=True)]
        defended = self.defence.apply(update, self.rng)
        fit_res.parameters = ndarrays_to_parameters(
            [s + d for s, d in zip(sent, defended, strict=True)]
        )
        out.content = compat.fitres_to_recorddict(fit_res, keep_input=True)
        self.applied += 1
        return out


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class _ClientSpec:
    address: str
    model_factory: ModelFactory
    shard: Records
    defence: Defence
    local_epochs: int
    lr: float
    seed: int


def _client_main(spec: _ClientSpec) -> None:
    """One Flower client process: local SGD on its shard, update through the mod."""
    import torch
    from flwr.client import NumPyClient
    from flwr.clientapp import ClientApp
    from flwr.compat.client.app import start_client_internal

    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    model = spec.model_factory()
    rng = np.random.default_rng(spec.seed)

    class _Client(NumPyClient):  # type: ignore[misc]
        def get_parameters(self, config: Any) -> list[np.ndarray[Any, Any]]:
            return [p.detach().numpy().copy() for p in model.parameters()]

        def fit(self, parameters: Any, config: Any) -> Any:
            with torch.no_grad():
                for p, value in zip(model.parameters(), parameters, strict=True):
                    p.copy_(torch.from_numpy(np.asarray(value)))
            local_update(model, spec.shard, spec.local_epochs, spec.lr, 32, rng)
            return self.get_parameters({}), len(spec.shard), {}

    def client_fn(context: Any) -> Any:
        return _Client().to_client()

    app = ClientApp(client_fn=client_fn, mods=[DefenceMod(spec.defence, spec.seed)])
    start_client_internal(
        server_address=spec.address,
        node_config={},
        load_client_app_fn=lambda *_: app,
        insecure=True,
        max_retries=20,
        max_wait_time=60,
    )


@dataclass
class FederationResult:
    """Final global parameters and, per round, each client's update as the server got it."""

    parameters: list[np.ndarray[Any, Any]]
    updates: list[list[list[np.ndarray[Any, Any]]]]
    seconds: float


def run_federation(
    model_factory: ModelFactory,
    shards: list[Records],
    defence: Defence,
    rounds: int = 3,
    local_epochs: int = 1,
    lr: float = 0.05,
    seed: int = 0,
    timeout: float = 300.0,
) -> FederationResult:
    """FedAvg over real Flower clients (one process each) talking gRPC to a Flower server
    in this process, every client applying ``defence`` through :class:`DefenceMod`."""
    import torch
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerConfig, start_server
    from flwr.server.strategy import FedAvg

    if len(shards) < 2:
        raise VetError("a federation needs at least two clients")
    torch.manual_seed(seed)
    initial = [p.detach().numpy().copy() for p in model_factory().parameters()]
    received: list[list[list[np.ndarray[Any, Any]]]] = []
    current = {"params": initial}

    class _Recording(FedAvg):  # type: ignore[misc]
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            base = current["params"]
            received.append(
                [
                    [n - b for n, b in zip(parameters_to_ndarrays(r.parameters), base, strict=True)]
                    for _, r in results
                ]
            )
            aggregated, metrics = super().aggregate_fit(server_round, results, failures)
            if aggregated is not None:
                current["params"] = parameters_to_ndarrays(aggregated)
            return aggregated, metrics

    strategy = _Recording(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=len(shards),
        min_available_clients=len(shards),
        initial_parameters=ndarrays_to_parameters(initial),
    )
    address = f"127.0.0.1:{free_port()}"
    context = multiprocessing.get_context("spawn")
    clients = [
        context.Process(
            target=_client_main,
            args=(_ClientSpec(address, model_factory, shard, defence, local_epochs, lr, seed + i),),
            daemon=True,
        )
        for i, shard in enumerate(shards)
    ]
    start = time.perf_counter()
    for process in clients:
        process.start()
    try:
        start_server(
            server_address=address,
            config=ServerConfig(num_rounds=rounds, round_timeout=timeout),
            strategy=strategy,
        )
    finally:
        for process in clients:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    if len(received) != rounds:
        raise VetError(f"the federation completed {len(received)} of {rounds} rounds")
    return FederationResult(current["params"], received, time.perf_counter() - start)
