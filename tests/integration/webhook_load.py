"""Hostile load against a real `threadlink connectors run` child process, and its memory: used
by tests/integration/test_webhook_memory.py (a generous bound) and `make bench` (the figure).
Loopback only; every loop is bounded in count and time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from sandbox.demo import free_port
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

MIB = 1024 * 1024

CONFIG = """
kafka:
  bootstrap_servers: {bootstrap}
  namespace: {namespace}
http:
  port: {port}
  body_read_timeout_s: {read_timeout_s}
connectors:
  slack:
    signing_secret: load-test-signing-secret
    bot_token: xoxb-load-test
    api_base_url: http://127.0.0.1:9/api
    bot_user_id: U0BOT
    bot_id: B0BOT
    workspace_url: https://acme.slack.com/
  jira:
    base_url: http://127.0.0.1:9
    email: bot@example.com
    api_token: load-test-token
    webhook_secret: load-test-webhook-secret
"""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class ConnectorsProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_connectors(bootstrap: str, namespace: str, run_dir: Path, *, read_timeout_s: float) -> ConnectorsProcess:
    port = free_port(18950)
    config = run_dir / "threadlink.yaml"
    config.write_text(CONFIG.format(bootstrap=bootstrap, namespace=namespace, port=port, read_timeout_s=read_timeout_s))
    apply_topics(
        Settings(kafka={"bootstrap_servers": bootstrap, "namespace": namespace}, connectors={"slack": {}, "jira": {}})
    )
    log = run_dir / "connectors.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "threadlink", "--config", str(config), "connectors", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process = ConnectorsProcess(proc, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"connectors exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{process.url}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.stop()
    raise TimeoutError("connectors did not serve /healthz within 120s")


async def oversized(url: str, count: int, *, size: int = 10 * MIB, concurrency: int = 10) -> Counter[int | str]:
    """`count` unauthenticated bodies of `size` bytes with Content-Length; answers by status."""
    body = b"x" * size
    answers: Counter[int | str] = Counter()
    limit = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient) -> None:
        async with limit:
            try:
                answers[(await client.post(url, content=body)).status_code] += 1
            except httpx.HTTPError as exc:  # the server may close while the client still sends
                answers[type(exc).__name__] += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(one(client) for _ in range(count)))
    return answers


async def stalled(port: int, path: str, count: int, *, timeout_s: float = 120) -> Counter[str]:
    """`count` connections that announce a body and send 10 bytes of it, then nothing; each
    waits for the server to answer and close. Returns the status lines by count."""
    answers: Counter[str] = Counter()

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{'z' * 10}"
            writer.write(head.encode())
            await writer.drain()
            answer = await reader.read()  # to EOF: the server cuts the connection off
            answers[answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"] += 1
        finally:
            writer.close()

    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(one() for _ in range(count)))
    return answers


@dataclass
class MemoryReport:
    baseline: int
    peak: int
    after: int
    oversized: Counter[int | str]
    stalled: Counter[str]

    @property
    def growth(self) -> int:
        return self.after - self.baseline

    def lines(self) -> list[str]:
        return [
            f"RSS baseline {self.baseline / MIB:.1f} MiB, peak {self.peak / MIB:.1f} MiB, "
            f"after {self.after / MIB:.1f} MiB (growth {self.growth / MIB:+.1f} MiB)",
            f"oversized answers: {dict(self.oversized)}",
            f"stalled answers: {dict(self.stalled)}",
        ]


def memory_under_hostile_load(
    process: ConnectorsProcess, *, oversized_count: int = 100, stalled_count: int = 200
) -> MemoryReport:
    path = "/webhooks/slack/events"
    # Warm-up: the first requests allocate what every later one reuses (parsers, metrics).
    asyncio.run(oversized(process.url + path, 5, size=2 * MIB))
    asyncio.run(stalled(process.port, path, 5))
    baseline = process.rss()
    peak = baseline

    async def load() -> tuple[Counter[int | str], Counter[str]]:
        nonlocal peak
        watching = True

        async def watch() -> None:
            nonlocal peak
            while watching:
                peak = max(peak, process.rss())
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            return await asyncio.gather(
                oversized(process.url + path, oversized_count), stalled(process.port, path, stalled_count)
            )
        finally:
            watching = False
            await watcher

    big, slow = asyncio.run(load())
    # Served again: the positive marker that the process got through it.
    assert httpx.get(f"{process.url}/healthz", timeout=10).status_code == 200
    return MemoryReport(baseline, peak, process.rss(), big, slow)


def main() -> int:
    """`make bench`: the figure the issue asks for (RSS back within 20 MB of the baseline)."""
    import tempfile

    bootstrap = os.environ.get("THREADLINK_TEST_BOOTSTRAP", "127.0.0.1:9092")
    with tempfile.TemporaryDirectory() as run_dir:
        process = start_connectors(bootstrap, f"bench{os.getpid()}", Path(run_dir), read_timeout_s=10)
        try:
            report = memory_under_hostile_load(process)
        finally:
            process.stop()
    for line in report.lines():
        print(line)
    ok = report.growth <= 20 * 1000 * 1000
    print(f"{'ok' if ok else 'FAIL'}: growth {report.growth / 1e6:.1f} MB (target: within 20 MB of the baseline)")
    return 0 if ok else 1
