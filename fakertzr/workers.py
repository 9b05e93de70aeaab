"""``fakertzr serve --workers N``: one fake on every core, N processes on one port (SO_REUSEPORT).

Each worker is a whole fake (its own backend and event loop) serving the public port; the kernel spreads
connections over them. They share what a client must not be able to tell apart: one token key (a token
from any worker opens a stream on any other) and one space of connection indices (worker ``i`` of ``n``
numbers its connections i, i + n, ...). The control API stays one API: a change sent to any worker is
applied there, then forwarded to every other worker's private port (127.0.0.1, the same backend without
the forwarding); ``state`` and ``journal`` answer for all workers together.

Faults that count (``times``, a limit of streams) count per worker; ``--workers 1`` for exact scripts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import sys
from typing import Any, Callable

import aiohttp
from aiohttp import web

from .appserver import IDLE_CONNECTION_S, http_logger
from .backend import FakeRtzrBackend, FakeRtzrConfig
from .errors import FakeRtzrError
from .loops import loop_factory
from .peers import Peers
from .shutdown import shut_down

START_TIMEOUT_S = 60.0
log = logging.getLogger("fakertzr.workers")


def _worker(index: int, count: int, config: FakeRtzrConfig, host: str, port: int, token_key: bytes,
            loop_choice: str, log_level: str, ready: Any, peers_in: Any, grpc_port: int | None = None,
            drain_s: float = 5.0, shutdown_code: int = 1001) -> None:
    """One worker process: private site first, then (once it knows its peers) the public port; until SIGTERM
    (the supervisor's) or the supervisor's death, then a graceful stop: every open stream closed with a frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    logging.basicConfig(level=log_level, format=f"%(asctime)s w{index} %(name)s %(message)s", stream=sys.stderr)
    from .server import CONTROL_PREFIX, PEERS_KEY, create_app, is_loopback  # noqa: PLC0415

    async def main() -> None:
        backend = FakeRtzrBackend(config, token_key=token_key, worker=(index, count))
        private = web.AppRunner(create_app(backend), handle_signals=False, keepalive_timeout=IDLE_CONNECTION_S,
                                logger=http_logger("fakertzr.http"))
        await private.setup()
        await web.TCPSite(private, "127.0.0.1", 0).start()
        ready.put(("private", index, private.addresses[0][1]))
        urls: dict[int, str] = await asyncio.get_running_loop().run_in_executor(None, peers_in.recv)
        public_app = create_app(backend, loopback_only=is_loopback(host))
        peers = Peers(index, count, {i: u for i, u in urls.items() if i != index}, aiohttp.ClientSession())
        public_app[PEERS_KEY] = peers
        telling: set[asyncio.Task] = set()

        def tell_peers_tokens_revoked() -> None:  # an expire_tokens fault fired here: every worker's tokens go
            task = asyncio.ensure_future(peers.send("POST", f"{CONTROL_PREFIX}/tokens/revoke", "", None))
            telling.add(task)
            task.add_done_callback(telling.discard)

        backend.on_tokens_revoked = tell_peers_tokens_revoked
        public = web.AppRunner(public_app, handle_signals=False, keepalive_timeout=IDLE_CONNECTION_S,
                               logger=http_logger("fakertzr.http"))
        await public.setup()
        await web.TCPSite(public, host, port, reuse_port=True).start()
        grpc_server = None  # held: a gRPC server that nothing refers to is stopped when collected
        if grpc_port is not None:
            from .grpc import FakeRtzrGrpcServer  # noqa: PLC0415 - optional: the [grpc] extra

            grpc_server = FakeRtzrGrpcServer(backend, host, grpc_port, reuse_port=True)  # one port for all workers
            await grpc_server.start()
        gc.freeze()  # start-up's objects (40 % of a worker's at 500 streams) are not walked by full collections
        ready.put(("public", index, os.getpid()))
        await stopped()
        await shut_down(backend, shutdown_code, drain_s, who=f"fakertzr-worker-{index}")
        if grpc_server is not None:
            await grpc_server.stop()
        await public.cleanup()
        await private.cleanup()
        await peers.session.close()

    try:
        with asyncio.Runner(loop_factory=loop_factory(loop_choice)) as runner:
            runner.run(main())
    except OSError as exc:
        ready.put(("error", index, f"cannot listen on {host}:{port}: {exc.strerror or exc}"))
    except Exception as exc:  # noqa: BLE001 - told to the supervisor, which says it and stops
        ready.put(("error", index, f"{type(exc).__name__}: {exc}"))


async def stopped() -> None:
    """Until this worker is told to stop (SIGTERM) or its supervisor is gone (killed: its workers must not
    live on, holding the port and answering beside a new fake's)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    parent = multiprocessing.parent_process()
    if parent is not None:  # its sentinel turns readable (EOF) once the supervisor has exited: stop, once
        loop.add_reader(parent.sentinel, lambda: (loop.remove_reader(parent.sentinel), stop.set()))
    await stop.wait()


def _free_shared_port(host: str) -> socket.socket:
    """A port the workers can all bind (held, not listening, until they have)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    probe.bind((host, 0))
    return probe


def serve_workers(config: FakeRtzrConfig, host: str, port: int, workers: int, *, loop_choice: str = "auto",
                  log_level: str = "INFO", grpc_port: int | None = None, drain_s: float = 5.0, shutdown_code: int = 1001,
                  announce: Callable[[str, list[int], str | None], None] = lambda url, pids, grpc: None) -> int:
    """Run ``workers`` worker processes on ``host:port`` (and the gRPC API on ``grpc_port``) until Ctrl-C or
    SIGTERM, or until one dies (exit 1). Either way every worker still alive is stopped gracefully (its open
    streams closed with ``shutdown_code``, ``drain_s`` at most): a dead worker takes only its own streams."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise FakeRtzrError("--workers needs SO_REUSEPORT (Linux, macOS, BSD)")
    probe = _free_shared_port(host) if port == 0 else None
    if probe is not None:
        port = probe.getsockname()[1]
    grpc_probe = _free_shared_port(host) if grpc_port == 0 else None
    if grpc_probe is not None:
        grpc_port = grpc_probe.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    token_key = secrets.token_bytes(32)
    pipes, procs = [], []
    for i in range(workers):
        receiving, sending = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, name=f"fakertzr-worker-{i}", daemon=True,
                           args=(i, workers, config, host, port, token_key, loop_choice, log_level, ready, receiving,
                                 grpc_port, drain_s, shutdown_code))
        proc.start()
        pipes.append(sending)
        procs.append(proc)
    stop = _on_sigterm()
    try:
        private = _collect(ready, "private", workers, procs)
        urls = {i: f"http://127.0.0.1:{p}" for i, p in private.items()}
        for pipe in pipes:
            pipe.send(urls)
        pids = _collect(ready, "public", workers, procs)
        for held in (probe, grpc_probe):
            if held is not None:
                held.close()
        announce(f"http://{host}:{port}", [pids[i] for i in range(workers)],
                 None if grpc_port is None else f"{host}:{grpc_port}")
        gone = multiprocessing.connection.wait([p.sentinel for p in procs] + [stop])
        if stop in gone:
            return 0
        dead = next(p for p in procs if p.sentinel in gone)
        dead.join(timeout=5)
        print(f"fakertzr: error: {dead.name} exited with status {dead.exitcode}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker drains its streams and exits
        for proc in procs:
            proc.join(timeout=drain_s + 10)
            if proc.is_alive():
                proc.kill()


def _collect(ready: Any, kind: str, workers: int, procs: list) -> dict[int, int]:
    """Wait until every worker has said ``kind``; a worker's error (or its death) stops the start."""
    got: dict[int, int] = {}
    deadline = START_TIMEOUT_S
    while len(got) < workers:
        try:
            what, index, value = ready.get(timeout=deadline)
        except Exception:  # queue.Empty
            dead = [p.name for p in procs if not p.is_alive()]
            raise FakeRtzrError(f"workers did not start within {START_TIMEOUT_S:g} s"
                                + (f" ({', '.join(dead)} exited)" if dead else "")) from None
        if what == "error":
            raise FakeRtzrError(f"worker {index}: {value}")
        if what == kind:
            got[index] = value
    return got


def _on_sigterm() -> Any:
    """SIGTERM ends the supervisor's wait like Ctrl-C: a readable end of a pipe that the handler writes to."""
    reader, writer = multiprocessing.Pipe(duplex=False)

    def handler(signum: int, frame: Any) -> None:
        writer.send(signum)

    signal.signal(signal.SIGTERM, handler)
    return reader
