"""The system under test, in its own process (``python -m benchmarks.sut --mode MODE``).

Modes:

- ``headless``: riskman as ``riskman --no-ui`` runs it: the same `Runtime` (REST client,
  signalrcore hubs, feed, engine on a real SQLite file) and the same logging to stderr.
- ``ui``: riskman inside the Textual app (`riskman.tui.app.RiskmanApp` with the real
  `RuntimeSource`), run with Textual's headless driver at 160x48: the app composes, lays out
  and renders every refresh; only the final write of escape codes to a terminal is skipped.
- ``floor``: the least a client can do: one WebSocket on the user hub (aiohttp), subscribed to
  the same events as riskman, that parses every record and, for a position over the
  max-contracts limit, POSTs the partial close at once through one keep-alive
  ``aiohttp.ClientSession``. No state, no rules, no database, no logging: the physical limit of
  Python + asyncio on this machine.
- ``floor-httpx``: the same, posting through a keep-alive ``httpx.AsyncClient`` (riskman's
  HTTP client): the difference from ``floor`` is the HTTP client's own cost.

One change to riskman for the push benchmarks (throughput, scale): the client-side REST limiter
(180 calls / 61 s, the gateway allows 200 / 60 s) is widened, or a thousand closes in a few
seconds would wait for the window; the limiter still runs on every call. The latency benchmark
paces its breaches inside the gateway's budget and runs riskman's limiter as shipped
(``--real-limit``).
"""

from __future__ import annotations

import time

IMPORT_BEGAN = time.monotonic()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .harness import ControlServer  # noqa: E402

BENCH_LIMIT = 1_000_000


class GcPauses:
    """Counts the garbage collector's pauses per generation (a gc callback: ~1 µs each)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._began)

    def summary(self) -> dict[str, Any]:
        out = {}
        for generation, pauses in self.pauses.items():
            out[f"gen{generation}"] = {
                "count": len(pauses),
                "max_ms": max(pauses, default=0.0) * 1000,
                "total_ms": sum(pauses) * 1000,
            }
        return out

    def reset(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()


class Sut:
    """What every mode answers: armed times, counters, profiling, stop."""

    def __init__(self, mode: str, config: Path, trace: int | None, widen: bool = True) -> None:
        self.mode = mode
        self.widen = widen
        self.config = config
        self.times: dict[str, float] = {"import_began": IMPORT_BEGAN}
        self.armed = asyncio.Event()
        self.stopping = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.error: str | None = None
        self._profiler: Any = None
        self.gc = GcPauses()
        self.tracer: Any = None
        if trace is not None:
            from .trace import Tracer

            self.tracer = Tracer(trace)
            self.tracer.install(floor=mode.startswith("floor"))

    async def cmd_wait_armed(self, timeout: float = 60.0) -> dict[str, float]:
        async with asyncio.timeout(timeout):
            while not self.armed.is_set():
                if self.error is not None:
                    raise RuntimeError(self.error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.armed.wait(), 0.1)
        return self.times

    async def cmd_stats(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "gc": self.gc.summary(),
            **{k: v() for k, v in self.extra.items()},
        }

    async def cmd_cpu(self) -> float:
        """CPU seconds this process has used so far (all its threads, user + system)."""
        times = os.times()
        return times.user + times.system

    async def cmd_reset_stats(self) -> None:
        self.gc.reset()
        self.counts.clear()
        if self.tracer is not None:
            self.tracer.records.clear()
            self.tracer.stalls.clear()

    async def cmd_trace(self) -> dict[str, Any]:
        """The stage timestamps of every traced breach and the loop stalls so far (and forget
        them)."""
        if self.tracer is None:
            return {"records": [], "stalls": []}
        records, self.tracer.records = self.tracer.records, []
        stalls, self.tracer.stalls = self.tracer.stalls, []
        return {"records": records, "stalls": stalls}

    async def cmd_profile_start(self) -> None:
        from pyinstrument import Profiler

        self._profiler = Profiler(interval=0.0005, async_mode="disabled")
        self._profiler.start()

    async def cmd_profile_stop(self, path: str) -> str:
        profiler, self._profiler = self._profiler, None
        if profiler is None:
            return ""
        profiler.stop()
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        html = profiler.output_html()

        def write() -> None:
            Path(path).write_text(text)
            Path(path).with_suffix(".html").write_text(html)

        await asyncio.to_thread(write)
        return path

    async def cmd_stop(self) -> None:
        self.stopping.set()


# --- riskman ----------------------------------------------------------------------------------


def _widen_rate_limit(sut: Sut) -> None:
    if not sut.widen:
        return
    import riskman.gateway.rest as rest

    rest.DEFAULT_LIMIT = BENCH_LIMIT


def _count_calls(sut: Sut, engine: Any) -> None:
    """Count events in and quotes routed (one attribute wrapper each: a few hundred ns)."""
    from riskman.core.ports import QuoteEvent

    submit = engine.submit
    update_quote = engine.quotes.update_quote
    counts = sut.counts

    def counted_submit(event: Any, *args: Any, **kwargs: Any) -> Any:
        counts["quotes_in" if isinstance(event, QuoteEvent) else "events_in"] += 1
        return submit(event, *args, **kwargs)

    def counted_update(*args: Any, **kwargs: Any) -> Any:
        counts["quotes_routed"] += 1
        return update_quote(*args, **kwargs)

    engine.submit = counted_submit
    engine.quotes.update_quote = counted_update


async def _arm(sut: Sut, runtime: Any, began: float) -> None:
    await runtime.wait_armed()
    times = runtime.times
    sut.times["logged_in"] = began + (times.logged_in or 0.0)
    sut.times["engine_ready"] = began + (times.engine_ready or 0.0)
    sut.times["armed"] = time.monotonic()
    assert runtime.engine is not None
    _count_calls(sut, runtime.engine)
    sut.armed.set()


async def run_headless(sut: Sut) -> None:
    from riskman.config import load_config
    from riskman.logs import setup_logging
    from riskman.runtime import Runtime

    sut.times["imported"] = time.monotonic()
    _widen_rate_limit(sut)
    settings = load_config(sut.config)
    setup_logging("text", "INFO")
    runtime = Runtime(settings)
    began = time.monotonic()
    try:
        await runtime.start()
        await _arm(sut, runtime, began)
        await sut.stopping.wait()
    except Exception as exc:
        sut.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        await runtime.stop()


async def run_ui(sut: Sut) -> None:
    from riskman.config import load_config
    from riskman.control.inprocess import InProcessControl
    from riskman.runtime import Runtime, RuntimeSource
    from riskman.tui.app import RiskmanApp

    sut.times["imported"] = time.monotonic()
    _widen_rate_limit(sut)
    settings = load_config(sut.config)
    runtime = Runtime(settings)
    control = InProcessControl(RuntimeSource(runtime), sut.config)
    app = RiskmanApp(settings, sut.config, control, cursor_blink=False)
    began = time.monotonic()
    sut.extra["redraws"] = lambda: app.redraws

    async def watch() -> None:
        # Polls only until the app has started its engine (before anything is measured).
        while control.engine is None:
            if app.phase == "failed":
                sut.error = app.start_error
                return
            await asyncio.sleep(0.01)
        await _arm(sut, runtime, began)
        await sut.stopping.wait()
        app.exit(0)

    watcher = asyncio.create_task(watch())
    try:
        await app.run_async(headless=True, size=(160, 48))
    finally:
        watcher.cancel()
        await runtime.stop()


# --- the floors -------------------------------------------------------------------------------


class FloorClient:
    """The floor's HTTP side: POST a JSON body on one keep-alive connection."""

    async def start(self, base_url: str) -> None: ...

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        raise NotImplementedError

    async def close(self) -> None: ...


class AiohttpFloor(FloorClient):
    def __init__(self) -> None:
        self.session: Any = None

    async def start(self, base_url: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            base_url=base_url,
            connector=aiohttp.TCPConnector(limit=8, keepalive_timeout=60.0),
            timeout=aiohttp.ClientTimeout(total=10.0),
        )

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        async with self.session.post(path, data=body, headers=headers) as reply:
            data: bytes = await reply.read()
            return data

    async def close(self) -> None:
        await self.session.close()


class HttpxFloor(FloorClient):
    def __init__(self) -> None:
        self.client: Any = None

    async def start(self, base_url: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=10.0,
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=60.0),
        )

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        reply = await self.client.post(path, content=body, headers=headers)
        return bytes(reply.content)

    async def close(self) -> None:
        await self.client.aclose()


class HttpxOnAiohttpFloor(HttpxFloor):
    """httpx's API on aiohttp's connections (riskman's REST transport)."""

    async def start(self, base_url: str) -> None:
        import httpx

        from riskman.gateway.aiohttp_transport import AiohttpTransport

        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=10.0, transport=AiohttpTransport()
        )


class HttpxOnH11Floor(HttpxFloor):
    """httpx's API on h11's connections (riskman's REST transport)."""

    async def start(self, base_url: str) -> None:
        import httpx

        from riskman.gateway.h11_transport import H11Transport

        self.client = httpx.AsyncClient(base_url=base_url, timeout=10.0, transport=H11Transport())


FLOOR_CLIENTS: dict[str, type[FloorClient]] = {
    "floor": AiohttpFloor,
    "floor-httpx": HttpxFloor,
    "floor-httpx-aiohttp": HttpxOnAiohttpFloor,
    "floor-httpx-h11": HttpxOnH11Floor,
}
USER_SUBSCRIPTIONS = ("SubscribeOrders", "SubscribePositions", "SubscribeTrades")


async def run_floor(sut: Sut) -> None:
    """One WebSocket on the user hub (aiohttp's, for both floors), subscribed to the same
    events riskman subscribes to, and one keep-alive HTTP client (aiohttp's or httpx's): the
    floors differ in the HTTP client only, so its cost shows on its own."""
    import aiohttp

    sut.times["imported"] = time.monotonic()
    config = json.loads(sut.config.read_text())
    gateway = config["gateway"]
    accounts: list[int] = config["accounts"]
    limit: int = config["rules"]["max_contracts"]["limit"]
    began = time.monotonic()
    http = FLOOR_CLIENTS[sut.mode]()
    await http.start(gateway["api_url"])
    try:
        reply = await http.post(
            "/api/Auth/loginKey",
            json.dumps(
                {
                    "userName": gateway["username"],
                    "apiKey": os.environ["RISKMAN_GATEWAY__API_KEY"],
                }
            ).encode(),
            {"Content-Type": "application/json"},
        )
        token = json.loads(reply)["token"]
        sut.times["logged_in"] = time.monotonic()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = gateway["user_hub_url"].replace("http", "ws", 1) + f"?access_token={token}"
        async with (
            aiohttp.ClientSession() as hub_session,
            hub_session.ws_connect(url, autoping=True, compress=0) as ws,
        ):
            await ws.send_str('{"protocol":"json","version":1}\x1e')
            await ws.receive()
            calls: list[tuple[str, list[int]]] = [("SubscribeAccounts", [])]
            calls += [(m, [a]) for a in accounts for m in USER_SUBSCRIPTIONS]
            for i, (target, arguments) in enumerate(calls):
                invocation = {
                    "type": 1,
                    "invocationId": str(i),
                    "target": target,
                    "arguments": arguments,
                }
                await ws.send_str(json.dumps(invocation) + "\x1e")
            pending = {str(i) for i in range(len(calls))}
            sut.times["engine_ready"] = began
            reader = asyncio.create_task(_floor_loop(sut, ws, http, headers, limit, pending))
            stop = asyncio.create_task(sut.stopping.wait())
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            stop.cancel()
    finally:
        await http.close()


async def _floor_loop(
    sut: Sut,
    ws: Any,
    http: FloorClient,
    headers: dict[str, str],
    limit: int,
    pending: set[str],
) -> None:
    import aiohttp

    tracer = sut.tracer
    async for frame in ws:
        if frame.type is not aiohttp.WSMsgType.TEXT:
            continue
        message: str = frame.data
        if tracer is not None and tracer.is_breach_frame(message):
            tracer.records.append({"loop": time.monotonic()})
        for record in message.split("\x1e"):
            if not record:
                continue
            item = json.loads(record)
            kind = item.get("type")
            if kind == 1:
                argument = item["arguments"][0]
                data = argument.get("data", argument)
                if item.get("target") == "GatewayUserPosition" and data["size"] > limit:
                    body = {
                        "accountId": data["accountId"],
                        "contractId": data["contractId"],
                        "size": data["size"] - limit,
                    }
                    if tracer is not None:
                        tracer.mark("post")
                    await http.post(
                        "/api/Position/partialCloseContract",
                        json.dumps(body).encode(),
                        headers,
                    )
                    sut.counts["closes"] += 1
            elif kind == 3 and pending:
                pending.discard(item.get("invocationId"))
                if not pending:
                    sut.times["armed"] = time.monotonic()
                    sut.armed.set()


# --- main -------------------------------------------------------------------------------------

MODES = {
    "headless": run_headless,
    # The same engine; the benchmark attaches stream clients to its control socket.
    "streamed": run_headless,
    "ui": run_ui,
    **dict.fromkeys(FLOOR_CLIENTS, run_floor),
}


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    sut = Sut(args.mode, Path(args.config), args.trace, widen=not args.real_limit)
    # The orchestrator stops us over the control connection (or by going away).
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    control = ControlServer(f"sut-{args.mode}", sut, loop, sut.stopping.set)
    control.start()
    try:
        await MODES[args.mode](sut)
    except Exception as exc:
        sut.error = sut.error or f"{type(exc).__name__}: {exc}"
        print(f"sut: {sut.error}", file=sys.stderr)
        # Stay up until the orchestrator has read the error (or gives up on us).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sut.stopping.wait(), 30)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sut")
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--trace", type=int, default=None, help="time the stages of breaches of this size"
    )
    parser.add_argument(
        "--real-limit",
        action="store_true",
        help="keep riskman's REST limiter as shipped (the benchmark paces its breaches)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
