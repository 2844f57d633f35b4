"""`threadlink run`: a broker if none is configured, the topics, the connectors and the
streams as child processes, and with no config file the sandbox demo on top.

Children are separate processes because that is how they are deployed (connectors and
streams scale and fail independently); here one command supervises them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from threadlink.config import Settings, config_path, load_settings

RUN_DIR = Path(os.environ.get("THREADLINK_RUN_DIR", ".run"))


def say(message: str) -> None:
    print(f"threadlink: {message}", flush=True)


@dataclass
class ChildProcesses:
    """The connectors and streams processes of one deployment, logs in `log_dir`."""

    config_file: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours is closed right away.
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "threadlink", "--config", str(self.config_file), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"{name} exited with {proc.returncode}; last log lines:\n" + "\n".join(tail))

    def stop_one(self, name: str, timeout_s: float = 30) -> None:
        """Stop one child as a supervisor would (SIGTERM, then SIGKILL), and forget it."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_one(self, name: str) -> None:
        """Kill one child outright (SIGKILL, no chance to clean up: a crash, an OOM kill, a
        machine lost), and forget it. Fault tests use it; `start` brings it back."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, timeout_s: float = 30) -> None:
        self.config_file.unlink(missing_ok=True)  # it holds the secrets; the children have read it
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, even by SIGKILL, so no
    connectors or streams process outlives it (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def write_config(settings: Settings, path: Path) -> Path:
    """The effective config for the children (secrets included: the file is 0600)."""
    from threadlink.config import connector_config

    doc = settings.model_dump(mode="json", exclude={"connectors"})
    doc["connectors"] = {}
    for name, entry in settings.connectors.items():
        plugin_config = connector_config(settings, name)
        fields = plugin_config.model_dump(mode="json")
        for key, value in plugin_config:
            if hasattr(value, "get_secret_value"):
                fields[key] = value.get_secret_value()
        doc["connectors"][name] = {"type": entry.type or name, "enabled": entry.enabled, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was already there with other permissions
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(doc, out, sort_keys=False)
    return path


def wait_http_ok(url: str, timeout_s: float, children: ChildProcesses | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if children:
            children.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def ensure_kafka(settings: Settings) -> tuple[Settings, object | None]:
    """Use the configured broker, or start the local one (returned, so we can stop it)."""
    if settings.kafka.bootstrap_servers:
        return settings, None
    from threadlink.devkafka import local_kafka

    module = local_kafka()
    kafka = module.LocalKafka("single")
    already = module.serves_requests(module.LAYOUTS["single"][0].broker_port)
    say(
        "no kafka.bootstrap_servers configured: "
        + (
            "using the local broker already running"
            if already
            else "starting a local Apache Kafka (KRaft) on 127.0.0.1:9092"
        )
    )
    if already:  # perhaps another checkout's: use it as it is, never start or stop it
        servers = module.bootstrap_servers("single")
    else:
        try:
            servers = kafka.up(quiet=True)
        except module.LocalKafkaError as exc:
            raise SystemExit(f"threadlink: {exc}") from None
    updated = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": servers})})
    return updated, (None if already else kafka)


def start_deployment(settings: Settings, run_dir: Path) -> ChildProcesses:
    from threadlink.topics_admin import apply_topics

    started = time.monotonic()
    report = apply_topics(settings)
    created = [line for line in report if line.startswith("created")]
    for line in report:
        if not line.startswith(("ok", "created")):
            say(f"topic {line}")
    if created:
        say(f"created {len(created)} topics in namespace {settings.kafka.namespace!r}")
    children = ChildProcesses(write_config(settings, run_dir / "effective-config.yaml"), run_dir / "logs")
    try:
        children.start("connectors", "connectors", "run")
        children.start("streams", "streams", "run")
        wait_http_ok(f"http://{settings.http.host}:{settings.http.port}/healthz", 60, children)
    except BaseException:
        children.stop()  # never leave half a deployment running
        raise
    say(f"connectors and streams running ({time.monotonic() - started:.1f}s; logs in {children.log_dir}/)")
    return children


def configured_by_environment() -> bool:
    """Settings from THREADLINK_* variables alone are a real deployment, never the sandbox."""
    from_env = Settings()
    return bool(from_env.connectors or from_env.kafka.bootstrap_servers)


def run_all(config: str | None, once: bool, keep_kafka: bool) -> int:
    sandbox = config_path(config) is None and not configured_by_environment()
    if sandbox:
        say("no config file found (threadlink.yaml or $THREADLINK_CONFIG): running the sandbox demo")
        from sandbox.demo import run_demo

        return asyncio.run(run_demo(once=once, keep_kafka=keep_kafka))
    settings, started_kafka = ensure_kafka(load_settings(config))
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop is a Ctrl-C: children stop too
    children: ChildProcesses | None = None
    status = 0
    try:
        children = start_deployment(settings, RUN_DIR)
        say("running; Ctrl-C stops")
        while True:
            children.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as exc:  # a child died, topics failed, a child never came up
        say(f"stopped: {exc}")
        status = 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if children is not None:
            children.stop()
        if started_kafka is not None and not keep_kafka:
            started_kafka.down(quiet=True)  # type: ignore[attr-defined]
    return status
