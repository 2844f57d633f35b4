#!/usr/bin/env python3
"""Run real Apache Kafka (KRaft) on 127.0.0.1 for development, demos and tests.

    python3 deploy/kafka/local_kafka.py fetch              # jars from Maven Central into deploy/kafka/lib
    python3 deploy/kafka/local_kafka.py up [--cluster]     # start, wait until it serves requests
    python3 deploy/kafka/local_kafka.py status [--cluster]
    python3 deploy/kafka/local_kafka.py down [--cluster]   # stop only the processes this script started

`single` is one combined broker+controller on 127.0.0.1:9092 (controller 9093).
`cluster` is three combined nodes on 127.0.0.1:19092-19094 (controllers 19192-19194) with
replication factor 3 and min.insync.replicas 2, for fault-injection tests.
`spare` is one more single node on 127.0.0.1:29092 (controller 29093), for tests that stop and
restart their broker: the shared one on 9092 keeps serving everyone else meanwhile.

Standard library only, so it runs before any virtualenv exists. `threadlink dev kafka` calls it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

KAFKA_DIR = Path(__file__).resolve().parent
LIB_DIR = KAFKA_DIR / "lib"
DEFAULT_STATE_DIR = KAFKA_DIR.parent.parent / ".run" / "kafka"
#: The test suite creates a namespace of topics per test: some 13,000 partitions in a day of runs
#: filled 512 MiB until the broker spent its time in full GCs and its own controller heartbeats
#: timed out (OutOfMemoryError in server.log). Partition metadata is what grows, so 2 GiB.
HEAP = os.environ.get("THREADLINK_KAFKA_HEAP", "-Xmx2g")
READY_TIMEOUT_S = float(os.environ.get("THREADLINK_KAFKA_READY_TIMEOUT", "90"))


# Brokers started by this process: kept so they are reaped (no zombies, no ResourceWarning)
# when this same process stops them; a broker outlives the process that started it otherwise.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""


@dataclass(frozen=True)
class Node:
    node_id: int
    broker_port: int
    controller_port: int


LAYOUTS: dict[str, list[Node]] = {
    "single": [Node(1, 9092, 9093)],
    "cluster": [Node(1, 19092, 19192), Node(2, 19093, 19193), Node(3, 19094, 19194)],
    "spare": [Node(1, 29092, 29093)],
}


def bootstrap_servers(layout: str) -> str:
    return ",".join(f"127.0.0.1:{n.broker_port}" for n in LAYOUTS[layout])


# --------------------------------------------------------------------------- fetch


def require_java() -> str:
    java = shutil.which("java")
    if not java:
        raise LocalKafkaError(
            "java not found: install a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major and major < 17:
        raise LocalKafkaError(f"java {major} found, Kafka 4 needs Java 17 or newer")
    return java


def fetch(quiet: bool = False) -> None:
    if any(LIB_DIR.glob("kafka_2.13-*.jar")):
        return
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            "mvn not found: install Maven to fetch Kafka from Maven Central (Debian: apt-get install -y maven)"
        )
    if not quiet:
        print("fetching Apache Kafka from Maven Central (first run only) ...", flush=True)
    cmd = [mvn, "-B", "-q", "-f", str(KAFKA_DIR / "pom.xml"), "package"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(LIB_DIR.glob("kafka_2.13-*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise LocalKafkaError(f"Maven could not fetch Kafka ({' '.join(cmd)}):\n{tail}")


# --------------------------------------------------------------------------- wire probes
# Two tiny Kafka protocol requests so readiness means "serves requests", not "port open".


def _request(port: int, api_key: int, version: int, body: bytes, timeout: float = 2.0) -> bytes:
    client_id = b"threadlink-local-kafka"
    header = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id
    payload = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def serves_requests(port: int) -> bool:
    """ApiVersions v0 answered with error_code 0."""
    try:
        resp = _request(port, 18, 0, b"")
    except OSError:
        return False
    return len(resp) >= 6 and struct.unpack(">h", resp[4:6])[0] == 0


def live_broker_count(port: int) -> int:
    """Brokers in the metadata (Metadata v4, no topics): fenced brokers are not listed."""
    try:
        resp = _request(port, 3, 4, struct.pack(">i?", 0, False))
    except OSError:
        return 0
    # correlation_id, throttle_time_ms, brokers array length
    return struct.unpack(">i", resp[8:12])[0] if len(resp) >= 12 else 0


# --------------------------------------------------------------------------- processes


class LocalKafka:
    def __init__(self, layout: str = "single", state_dir: Path = DEFAULT_STATE_DIR) -> None:
        if layout not in LAYOUTS:
            raise LocalKafkaError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.layout = layout
        self.nodes = LAYOUTS[layout]
        self.dir = Path(state_dir) / layout

    def node_dir(self, node: Node) -> Path:
        return self.dir / f"node-{node.node_id}"

    def pid_file(self, node: Node) -> Path:
        return self.node_dir(node) / "kafka.pid"

    def log_file(self, node: Node) -> Path:
        return self.node_dir(node) / "server.log"

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replicas = len(self.nodes)
        min_isr = 2 if replicas >= 3 else 1
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.broker_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.node_dir(node) / 'data'}",
                "num.partitions=3",
                f"default.replication.factor={replicas}",
                f"min.insync.replicas={min_isr}",
                f"offsets.topic.replication.factor={replicas}",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={min_isr}",
                f"share.coordinator.state.topic.replication.factor={replicas}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                "auto.create.topics.enable=false",
                # Tests create consumer groups constantly; the default 3 s delay only slows them.
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=24",
                "log.segment.bytes=16777216",
                "",
            ]
        )

    def _log4j(self, node: Node) -> Path:
        path = self.node_dir(node) / "log4j2.properties"
        path.write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.out.ref=OUT\n"
            "appender.out.type=Console\nappender.out.name=OUT\n"
            "appender.out.layout.type=PatternLayout\n"
            "appender.out.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
            "logger.state.name=state.change.logger\nlogger.state.level=WARN\n"
        )
        return path

    def _recorded_pid(self, node: Node) -> int:
        try:
            return int(self.pid_file(node).read_text().strip())
        except (OSError, ValueError):
            return 0

    def _pid(self, node: Node) -> int | None:
        pid = self._recorded_pid(node)
        if not pid:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        # Only a process we started (our config path in its command line) counts as ours.
        return pid if str(self.node_dir(node)) in cmdline else None

    def up(self, quiet: bool = False) -> str:
        fetch(quiet)
        java = require_java()
        started: list[Node] = []
        try:
            self._start_missing(java, started)
            self.wait_ready()
        except LocalKafkaError:
            self.down(quiet=True, nodes=started)  # only what this call started: never a broker in use
            raise
        servers = bootstrap_servers(self.layout)
        if not quiet:
            print(f"kafka {self.layout} ready at {servers} (logs: {self.dir}/node-*/server.log)", flush=True)
        return servers

    def _start_missing(self, java: str, started: list[Node]) -> None:
        classpath = f"{LIB_DIR}/*"
        for node in self.nodes:
            if self._pid(node):
                continue
            for port in (node.broker_port, node.controller_port):
                if _port_in_use(port):
                    raise LocalKafkaError(
                        f"port 127.0.0.1:{port} is already in use by another process; stop it or point "
                        "THREADLINK_KAFKA__BOOTSTRAP_SERVERS at the broker you already run"
                    )
            ndir = self.node_dir(node)
            ndir.mkdir(parents=True, exist_ok=True)
            props = ndir / "server.properties"
            props.write_text(self._properties(node))
            log4j = self._log4j(node)
            env = dict(os.environ, KAFKA_HEAP_OPTS=HEAP)
            jvm = [java, HEAP, "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
            if not (ndir / "data" / "meta.properties").exists():
                cluster_id = self._cluster_id()
                fmt = subprocess.run(
                    [
                        *jvm,
                        "kafka.tools.StorageTool",
                        "format",
                        f"--cluster-id={cluster_id}",
                        "-c",
                        str(props),
                        "--ignore-formatted",
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if fmt.returncode != 0:
                    raise LocalKafkaError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
            with open(self.log_file(node), "ab") as log:
                proc = subprocess.Popen(
                    [*jvm, "kafka.Kafka", str(props)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            _STARTED[proc.pid] = proc
            self.pid_file(node).write_text(str(proc.pid))
            started.append(node)

    def _cluster_id(self) -> str:
        shared = self.dir / "cluster.id"
        if not shared.exists():
            shared.parent.mkdir(parents=True, exist_ok=True)
            # KRaft wants a base64 UUID of 22 characters (what kafka-storage random-uuid prints).
            import base64

            # Like Kafka's own Uuid.randomUuid(): never starting with '-', which a command line
            # would read as an option.
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            shared.write_text(cluster_id)
        return shared.read_text().strip()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        expected = len(self.nodes)
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if not _alive(self._recorded_pid(n))]
            if dead:
                raise LocalKafkaError(
                    f"kafka node {dead[0].node_id} exited while starting; see {self.log_file(dead[0])}"
                )
            if all(serves_requests(n.broker_port) for n in self.nodes) and all(
                live_broker_count(n.broker_port) >= expected for n in self.nodes
            ):
                return
            time.sleep(0.5)
        raise LocalKafkaError(
            f"kafka did not become ready within {READY_TIMEOUT_S:.0f}s; see {self.dir}/node-*/server.log"
        )

    def down(self, quiet: bool = False, nodes: list[Node] | None = None) -> None:
        nodes = self.nodes if nodes is None else nodes
        pids = {n.node_id: self._pid(n) for n in nodes}
        for pid in pids.values():
            if pid:
                _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in nodes:
            pid = pids[node.node_id]
            while pid and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid and _alive(pid):
                _signal_group(pid, signal.SIGKILL)
            _reap(pid)
            self.pid_file(node).unlink(missing_ok=True)
        if not quiet:
            stopped = sum(1 for p in pids.values() if p)
            print(f"kafka {self.layout}: stopped {stopped} process(es)", flush=True)

    def kill_node(self, node_id: int) -> None:
        """Hard-stop one node (fault tests)."""
        node = next(n for n in self.nodes if n.node_id == node_id)
        pid = self._pid(node)
        if pid:
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
            _reap(pid)

    def status(self) -> list[str]:
        lines = []
        for node in self.nodes:
            pid = self._pid(node)
            serving = serves_requests(node.broker_port)
            state = "serving" if serving else ("starting" if pid else "stopped")
            lines.append(f"node {node.node_id} 127.0.0.1:{node.broker_port} {state}" + (f" pid {pid}" if pid else ""))
        return lines

    def wipe(self) -> None:
        self.down(quiet=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _reap(pid: int | None) -> None:
    proc = _STARTED.pop(pid or 0, None)
    if proc is not None:
        proc.wait(timeout=30)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        # A zombie child of ours counts as gone.
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_kafka", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "up", "down", "status", "wipe"])
    parser.add_argument("--cluster", action="store_true", help="three nodes, RF 3, min ISR 2 (ports 19092-19094)")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("THREADLINK_KAFKA_STATE_DIR", DEFAULT_STATE_DIR))
    )
    args = parser.parse_args(argv)
    kafka = LocalKafka("cluster" if args.cluster else "single", args.state_dir)
    try:
        if args.action == "fetch":
            fetch()
            print(f"kafka jars in {LIB_DIR}")
        elif args.action == "up":
            kafka.up()
        elif args.action == "down":
            kafka.down()
        elif args.action == "wipe":
            kafka.wipe()
            print(f"kafka {kafka.layout}: stopped and removed {kafka.dir}")
        else:
            print("\n".join(kafka.status()))
    except LocalKafkaError as exc:
        print(f"local kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
