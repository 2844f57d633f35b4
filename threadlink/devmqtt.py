"""A local Mosquitto (Debian's package) for tests and the bench: one broker on 127.0.0.1 with
persistence on, so a persistent session and its queued QoS 1 messages survive a broker
restart as they would in a plant.

    with running_mosquitto(port=18801, data_dir=tmp) as broker:
        ...  # broker.port; broker.restart() keeps the session store

Installs `mosquitto` with apt when it is missing and we are root (CI is a fresh Debian machine).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Queued messages per offline session. Mosquitto's default (1000) drops the rest silently,
#: which is exactly what a persistent session is there to prevent; production brokers need
#: the same setting (docs/connectors/mqtt.md).
MAX_QUEUED_MESSAGES = 1_000_000


def mosquitto_binary() -> str:
    """The broker's path, installing Debian's package first when it is missing."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "mosquitto"],
        check=True,
        env=env,
        capture_output=True,
    )
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def write_config(data_dir: Path, port: int) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                # Started as root, Mosquitto switches to its own user, which cannot write into a
                # test's private temporary folder: no persistence file, no session after a restart.
                f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {data_dir}/",
                "autosave_interval 1",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "max_queued_bytes 0",
                # 0: the client's Receive Maximum (MQTT 5) alone bounds what is unacknowledged.
                "max_inflight_messages 0",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    return config


@dataclass
class Mosquitto:
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            # Else the readiness check below would take someone else's broker for ours.
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use: stop what listens there first")
        config = write_config(self.data_dir, self.port)
        binary = mosquitto_binary()
        with (self.data_dir / "mosquitto.log").open("ab") as log:  # the child keeps its own copy
            # Its own process group, stopped by that group's id: never by name (others run brokers too).
            self.process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                where = self.data_dir / "mosquitto.log"
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}; see {where}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file before it exits."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(*, port: int, data_dir: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(port=port, data_dir=data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
