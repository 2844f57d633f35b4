"""A real Redmine 5 (Debian's `redmine` package) for the Redmine tests: SQLite, REST API on,
login required, served by `rails server` (webrick) on 127.0.0.1 as www-data.

The packages are installed on first use (debconf preseeded, so the install creates and migrates
the SQLite database by itself); every step is idempotent and skipped when already done. apt is
shared with other processes on a CI machine, so it waits for the dpkg lock instead of failing.
Recipe: ../shared/docs/real-servers.md, "Redmine".

    python -m tests.integration.redmine_server --port 19130   # starts one, Ctrl-C stops it
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import debian_packages

REDMINE_DIR = Path("/usr/share/redmine")
TMP_LINK = REDMINE_DIR / "tmp"
TMP_TARGET = Path("/var/cache/redmine/default/tmp")
GEMFILE_LOCAL = REDMINE_DIR / "Gemfile.local"
PACKAGES = ("redmine", "redmine-sqlite")
PRESEED = (
    "redmine redmine/instances/default/dbconfig-install boolean true\n"
    "redmine redmine/instances/default/database-type select sqlite3\n"
)
SERVER = ("bundle", "exec", "rails", "server", "-b", "127.0.0.1", "-e", "production")
RUN_ENV = {"REDMINE_INSTANCE": "default", "RAILS_ENV": "production"}
PROJECT = "threadlink"
SETUP_LOCK = Path(tempfile.gettempdir()) / "threadlink-redmine-setup.lock"


class RedmineError(RuntimeError):
    """Redmine could not be installed, prepared or started; the message says which and why."""


def _run(cmd: list[str], *, what: str, timeout: float, env: dict[str, str] | None = None, **kw: Any) -> str:
    return debian_packages.run(cmd, what=what, timeout=timeout, error=RedmineError, env=env, **kw)


def ensure_installed() -> float:
    """Install the packages unless they are; returns the seconds it took (0 when skipped)."""
    return debian_packages.ensure_installed(PACKAGES, error=RedmineError, preseed=PRESEED)


def ensure_prepared() -> None:
    """webrick in the bundle (Redmine 5 bundles no app server) and a writable tmp for www-data."""
    gemfile = GEMFILE_LOCAL.read_text() if GEMFILE_LOCAL.exists() else ""
    if "webrick" not in gemfile:
        GEMFILE_LOCAL.write_text(gemfile + "gem 'webrick'\n")
        _run(["bundle", "install", "--local"], what="bundle install --local", timeout=300, cwd=REDMINE_DIR)
    if not TMP_LINK.exists() and not TMP_LINK.is_symlink():
        TMP_TARGET.mkdir(parents=True, exist_ok=True)
        shutil.chown(TMP_TARGET, "www-data", "www-data")
        TMP_LINK.symlink_to(TMP_TARGET)


def _as_www_data(args: list[str]) -> list[str]:
    return ["runuser", "-u", "www-data", "--", "env", *(f"{k}={v}" for k, v in RUN_ENV.items()), *args]


# Enables REST and requires login (without it a wrong API key still reads public projects),
# makes sure the admin has an API key, creates the test project, and prints the key.
_SETUP_RUBY = """
Setting.rest_api_enabled = '1'
Setting.login_required = '1'
admin = User.find_by(login: 'admin')
key = admin.api_key
unless Project.find_by(identifier: '%(project)s')
  p = Project.new(name: 'threadlink tests', identifier: '%(project)s', is_public: false)
  p.enabled_module_names = ['issue_tracking']
  p.trackers = Tracker.all
  p.save!
end
puts "APIKEY=#{key}"
"""


def configure() -> str:
    """REST on, login required, the test project; returns the admin's API key."""
    out = _run(
        _as_www_data(["bundle", "exec", "rails", "runner", _SETUP_RUBY % {"project": PROJECT}]),
        what="rails runner (settings, API key)",
        timeout=300,
        cwd=REDMINE_DIR,
    )
    for line in out.splitlines():
        if line.startswith("APIKEY="):
            return line.removeprefix("APIKEY=").strip()
    raise RedmineError(f"rails runner printed no API key: {out[-500:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Redmine:
    """One Redmine process; `start()` returns once the REST API answers, `stop()` ends its process group."""

    port: int = field(default_factory=free_port)
    api_key: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redmine-")) / "rails.out")
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        # One set-up at a time on a machine: test sessions side by side share the package's files.
        with SETUP_LOCK.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.timings["install_s"] = ensure_installed()
            began = time.monotonic()
            ensure_prepared()
            self.api_key = configure()
            self.timings["configure_s"] = time.monotonic() - began
        began = time.monotonic()
        shutil.chown(self.log_path.parent, "www-data", "www-data")  # rails writes its pid file there
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                _as_www_data([*SERVER, "-p", str(self.port), "-P", str(self.log_path.parent / "server.pid")]),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REDMINE_DIR,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedmineError(f"rails server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                self.request("GET", "/users/current.json")
                self.timings["server_start_s"] = time.monotonic() - began
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        self.stop()
        raise RedmineError(f"Redmine did not answer on {self.url} within {timeout:.0f} s: {self._log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # runuser, env, bundle and ruby: the whole group
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # -- admin REST calls the tests make (synchronous: they set the scene) ---------------------

    def request(self, method: str, path: str, body: Any = None, *, api_key: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("X-Redmine-API-Key", self.api_key if api_key is None else api_key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def create_issue(self, subject: str, **fields: Any) -> dict[str, Any]:
        issue = {"project_id": PROJECT, "subject": subject, **fields}
        return self.request("POST", "/issues.json", {"issue": issue})["issue"]

    def add_note(self, issue_id: int, notes: str, *, private: bool = False) -> None:
        self.request("PUT", f"/issues/{issue_id}.json", {"issue": {"notes": notes, "private_notes": private}})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=19130)
    server = Redmine(port=parser.parse_args().port)
    server.start()
    print(f"Redmine on {server.url}, admin API key {server.api_key}; {server.timings}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
