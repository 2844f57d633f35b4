"""A real Synapse homeserver for the Matrix tests, on 127.0.0.1 with SQLite and federation off.

Synapse lives in its own virtualenv (its pins would fight threadlink's), cached at
$THREADLINK_SYNAPSE_VENV (default ~/.cache/threadlink/synapse-venv) and created with pip on first
use; threadlink itself never needs it. Recipe: ../shared/docs/real-servers.md, "Matrix Synapse".

    python -m tests.integration.synapse_server --port 19108   # starts one, Ctrl-C stops it
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYNAPSE_PACKAGE = "matrix-synapse==1.163.2"
DEFAULT_VENV = Path.home() / ".cache" / "threadlink" / "synapse-venv"
SERVER_NAME = "localhost"
# Default limits answer 429 after a few quick sends; tests need behaviour, not throttling.
_UNLIMITED = {"per_second": 10000, "burst_count": 100000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_room_creation": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_admin_redaction": _UNLIMITED,
}


class SynapseError(RuntimeError):
    """Synapse could not be installed, configured or started; the message says which and why."""


def venv_path() -> Path:
    return Path(os.environ.get("THREADLINK_SYNAPSE_VENV", str(DEFAULT_VENV)))


def ensure_venv(venv: Path | None = None) -> Path:
    """The venv's python, installing matrix-synapse first when the cached venv lacks it."""
    venv = venv or venv_path()
    python = venv / "bin" / "python"
    if python.exists() and _imports_synapse(python):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", SYNAPSE_PACKAGE],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise SynapseError(f"installing Synapse failed at {step[2:]}: {done.stderr[-2000:]}")
    return python


def _imports_synapse(python: Path) -> bool:
    done = subprocess.run([str(python), "-c", "import synapse"], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


@dataclass
class AppService:
    """An application service registration: Synapse PUTs transactions to `url` with `hs_token`;
    the service acts with `as_token`. Tokens are fresh per instance. The file Synapse loads is
    the one `threadlink matrix registration` prints (`registration_yaml`)."""

    url: str
    id: str = "threadlink"
    sender_localpart: str = "threadlink"
    as_token: str = field(default_factory=lambda: secrets.token_hex(24))
    hs_token: str = field(default_factory=lambda: secrets.token_hex(24))


@dataclass
class Synapse:
    """One homeserver process; `start()` returns once the client API answers, `stop()` ends it by PID."""

    port: int
    appservice_files: list[Path] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="synapse-")))
    shared_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    appservice: AppService | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        python = ensure_venv()
        config = self._write_config(python)
        with (self.workdir / "synapse.out").open("wb") as log:
            self.process = subprocess.Popen(
                [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SynapseError(f"Synapse exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self.stop()
        raise SynapseError(f"Synapse did not answer on {self.url} within {timeout:.0f} s: {self._log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def register_user(self, localpart: str, password: str = "", admin: bool = False) -> dict[str, Any]:
        """A user through the shared-secret admin API; answers {"user_id", "access_token", ...}."""
        password = password or secrets.token_hex(8)
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = self._call("GET", endpoint)["nonce"]
        role = b"admin" if admin else b"notadmin"
        message = b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), role])
        mac = hmac.new(self.shared_secret.encode(), message, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac}
        return self._call("POST", endpoint, body)

    def client(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One client-server API call as the holder of `token` (a test user or the AS)."""
        return self._call(method, f"{self.url}{path}", body, token)

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None, token: str = "") -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            raise SynapseError(f"{method} {url} -> {exc.code}: {exc.read()[:500]!r}") from exc

    def _write_config(self, python: Path) -> Path:
        config = self.workdir / "homeserver.yaml"
        generate = [
            str(python),
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            SERVER_NAME,
            "--config-path",
            str(config),
            "--generate-config",
            "--report-stats=no",
            "--data-directory",
            str(self.workdir),
        ]
        done = subprocess.run(generate, capture_output=True, text=True, cwd=self.workdir, timeout=120, check=False)
        if done.returncode != 0:
            raise SynapseError(f"generating Synapse's config failed: {done.stderr[-2000:]}")
        overrides: dict[str, Any] = {
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": ":memory:"}},
            "registration_shared_secret": self.shared_secret,
            "enable_registration": False,
            "trusted_key_servers": [],
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "federation_domain_whitelist": [],
            "app_service_config_files": [str(path) for path in self.appservice_files],
            **_RATE_LIMITS,
        }
        # Merged with the venv's own PyYAML, so threadlink's venv needs no YAML library.
        merge = (
            "import json, sys, yaml; path = sys.argv[1]; config = yaml.safe_load(open(path));"
            " config.update(json.loads(sys.argv[2])); config.pop('log_config', None);"
            " yaml.safe_dump(config, open(path, 'w'))"
        )
        done = subprocess.run(
            [str(python), "-c", merge, str(config), json.dumps(overrides)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise SynapseError(f"writing Synapse's config failed: {done.stderr[-2000:]}")
        return config

    def _log_tail(self) -> str:
        path = self.workdir / "synapse.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no output)"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=19108)
    parser.add_argument("--appservice", type=Path, action="append", default=[])
    args = parser.parse_args()
    server = Synapse(port=args.port, appservice_files=args.appservice)
    server.start()
    print(f"Synapse at {server.url} (workdir {server.workdir}); Ctrl-C stops it", flush=True)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
