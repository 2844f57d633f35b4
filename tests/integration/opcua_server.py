"""A small plant as an OPC UA server (asyncua's Server) on 127.0.0.1, in a subprocess so a test
can kill it and start it again on the same port (a server restart, as in a plant).

Address space (namespace 2, `urn:threadlink:test-plant`, string node ids)::

    Objects/Plant/Line1/Press3/State   ns=2;s=Line1.Press3.State   "running"
    Objects/Plant/Line1/Press4/State   ns=2;s=Line1.Press4.State   "idle"
    Objects/Plant/Orders/PO-1001/Status  ns=2;s=Orders.PO-1001.Status  "planned"

The test writes values through the subprocess's stdin, one JSON line per write, answered by
one line (`ok` or `error: ...`)::

    {"node": "Line1.Press3.State", "value": "down"}
    {"node": "Line1.Press3.State", "status": "BadSensorFailure"}      # a Bad status code
    {"node": "Line1.Press3.State", "value": ["a", "b"]}               # an array: the wrong type

    with PlantServer.running() as plant:    # plant.url, plant.write(...), plant.restart(State=...)
    with PlantServer.running(user="threadlink:secret") as plant:   # user name and password required
        ...

Run alone: `python -m tests.integration.opcua_server --port 4840 --set Line1.Press3.State=down`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAMESPACE = "urn:threadlink:test-plant"
#: (node id of the variable under ns=2, its initial value)
VARIABLES: dict[str, str] = {
    "Line1.Press3.State": "running",
    "Line1.Press4.State": "idle",
    "Orders.PO-1001.Status": "planned",
}
START_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 10.0


# -- the server (in the subprocess) ---------------------------------------------------------------


class _OneUser:
    """Lets in one user name with its password, nobody else (and no anonymous session)."""

    def __init__(self, name: str, password: str) -> None:
        self.name, self.password = name, password

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


async def serve(port: int, initial: dict[str, str], user: str | None = None) -> None:
    from asyncua import Server, ua

    server = Server(user_manager=_OneUser(*user.split(":", 1)) if user else None)
    await server.init()
    if user:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/threadlink/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
    folders: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    for path, value in VARIABLES.items():
        parent = plant
        *objects, leaf = path.split(".")
        for depth in range(len(objects)):
            node_id = ".".join(objects[: depth + 1])
            if node_id not in folders:
                folders[node_id] = await parent.add_object(ua.NodeId(node_id, ns), ua.QualifiedName(objects[depth], ns))
            parent = folders[node_id]
        variables[path] = await parent.add_variable(
            ua.NodeId(path, ns), ua.QualifiedName(leaf, ns), initial.get(path, value), ua.VariantType.String
        )
    async with server:
        print(f"ready {port}", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            try:
                await _apply(variables, json.loads(line))
                print("ok", flush=True)
            except Exception as exc:  # the test reads the reason
                print(f"error: {exc!r}", flush=True)


async def _apply(variables: dict[str, Any], command: dict[str, Any]) -> None:
    from asyncua import ua

    node = variables[command["node"]]
    now = datetime.now(UTC)
    if "status" in command:
        status = ua.StatusCode(getattr(ua.StatusCodes, command["status"]))
        await node.write_value(ua.DataValue(ua.Variant(None), StatusCode=status, SourceTimestamp=now))
        return
    variant = ua.Variant(command["value"], getattr(ua.VariantType, command.get("variant", "String")))
    await node.write_value(ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--set", action="append", default=[], help="NODE=VALUE, an initial value")
    parser.add_argument("--user", help="NAME:PASSWORD, the only user let in (default: anonymous)")
    args = parser.parse_args()
    initial = dict(item.split("=", 1) for item in args.set)
    asyncio.run(serve(args.port, initial, args.user))


# -- the test's handle on it -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PlantServer:
    """The server subprocess: start, write values, kill and start again on the same port."""

    def __init__(self, port: int | None = None, *, user: str | None = None) -> None:
        """`user`: NAME:PASSWORD, the only user the server lets in (default: anonymous sessions)."""
        self.port = port or free_port()
        self.user = user
        self.url = f"opc.tcp://127.0.0.1:{self.port}/threadlink/"
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, user: str | None = None) -> Iterator[PlantServer]:
        plant = cls(user=user)
        plant.start()
        try:
            yield plant
        finally:
            plant.stop()

    def start(self, **initial: str) -> None:
        """`initial`: node id -> value the server starts with (a change made while it was down)."""
        root = Path(__file__).resolve().parents[2]
        command = [sys.executable, "-m", "tests.integration.opcua_server", "--port", str(self.port)]
        for node, value in initial.items():
            command += ["--set", f"{node}={value}"]
        if self.user:
            command += ["--user", self.user]
        self._process = subprocess.Popen(
            command,
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        line = self._reply(deadline)
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"the OPC UA test server did not start: {line!r}")

    def write(self, node: str, value: Any = None, *, status: str | None = None, variant: str | None = None) -> None:
        """Blocking; sets `node` (e.g. Line1.Press3.State) and returns once the server has it."""
        command: dict[str, Any] = {"node": node}
        if status is not None:
            command["status"] = status
        else:
            command["value"] = value
        if variant is not None:
            command["variant"] = variant
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        reply = self._reply(time.monotonic() + REPLY_TIMEOUT_S)
        if reply != "ok":
            raise RuntimeError(f"the OPC UA test server refused {command}: {reply}")

    def kill(self) -> None:
        """Like a crash: no goodbye to the clients."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._close_pipes()

    def restart(self, **initial: str) -> None:
        self.kill()
        self.start(**initial)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()  # the server's loop ends at end of input
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        assert self._process is not None
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._process = None

    def _reply(self, deadline: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    return self._process.stdout.readline().strip()
                if self._process.poll() is not None:
                    break
        raise RuntimeError("the OPC UA test server did not answer in time (or exited)")


if __name__ == "__main__":
    main()
