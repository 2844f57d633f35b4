"""The Synapse fixture is a working homeserver: users register through the shared-secret API, and a
message in a room the application service's user joined reaches the service as a transaction
authenticated with the hs_token."""

from __future__ import annotations

import json
import queue
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .synapse_server import Synapse

pytestmark = pytest.mark.integration


def _receiver(port: int, seen: queue.Queue[tuple[str, str, dict[str, Any]]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            seen.put((self.path, self.headers.get("Authorization", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")  # Twisted's client calls a body without it partial
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_message_reaches_the_application_service(synapse: Synapse) -> None:
    assert synapse.appservice is not None
    seen: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
    receiver = _receiver(19109, seen)
    try:
        alice = synapse.register_user("alice-fixture")
        token = alice["access_token"]
        room = synapse.client("POST", "/_matrix/client/v3/createRoom", token, {"preset": "private_chat"})["room_id"]
        bot = f"@{synapse.appservice.sender_localpart}:localhost"
        quoted = urllib.parse.quote(room)
        synapse.client("POST", f"/_matrix/client/v3/rooms/{quoted}/invite", token, {"user_id": bot})
        synapse.client("POST", f"/_matrix/client/v3/join/{quoted}", synapse.appservice.as_token, {})
        body = {"msgtype": "m.text", "body": "hello from the fixture"}
        synapse.client("PUT", f"/_matrix/client/v3/rooms/{quoted}/send/m.room.message/t1", token, body)

        messages: list[dict[str, Any]] = []
        while not messages:
            path, authorization, payload = seen.get(timeout=30)
            assert path.startswith("/webhooks/matrix/_matrix/app/v1/transactions/")
            assert authorization == f"Bearer {synapse.appservice.hs_token}"
            messages += [e for e in payload["events"] if e["type"] == "m.room.message"]
        assert messages[0]["room_id"] == room
        assert messages[0]["sender"] == alice["user_id"]
        assert messages[0]["content"]["body"] == "hello from the fixture"
    finally:
        receiver.shutdown()
        receiver.server_close()
