"""A real WordPress 6.1 (Debian's `wordpress` package) for the WordPress tests: MariaDB in a data
directory of its own under a temporary directory, PHP's built-in server on 127.0.0.1 as www-data,
installed through its own install form, with an application password for the admin.

The packages are installed on first use; every step is idempotent and skipped when already done.
apt is shared with other processes on a CI machine, so it waits for the dpkg lock instead of
failing. Recipe: ../shared/docs/real-servers.md, "WordPress".

Debian's /usr/share/wordpress/wp-config.php loads /etc/wordpress/config-<host>.php: the fixture
writes config-127.0.0.1.php, which picks this server's settings by the request's port
(/etc/wordpress/threadlink/site-<port>.php), so two servers side by side keep separate databases.
The permalink structure is `/%post_id%/%postname%/`: pretty URLs that carry the post's id, as
docs/connectors/wordpress.md advises (PHP's server hands every path without a file to index.php).

    python -m tests.integration.wordpress_server --port 19140   # starts one, Ctrl-C stops it
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import debian_packages

WORDPRESS_DIR = Path("/usr/share/wordpress")
CONFIG_DIR = Path("/etc/wordpress")
SITES_DIR = CONFIG_DIR / "threadlink"
HOST_CONFIG = CONFIG_DIR / "config-127.0.0.1.php"
PACKAGES = ("wordpress", "php-cli", "php-mysql", "mariadb-server")
SETUP_LOCK = Path(tempfile.gettempdir()) / "threadlink-wordpress-setup.lock"
ADMIN = "admin"
PERMALINKS = "/%post_id%/%postname%/"

# Loaded by Debian's wp-config.php for any request to 127.0.0.1 (and by the fixture's php -r).
_DISPATCH = """<?php
// Written by threadlink's tests (tests/integration/wordpress_server.py): one site per port.
$threadlink_port = preg_replace('/^.*:/', '', $_SERVER['HTTP_HOST'] ?? '');
$threadlink_site = '%(sites)s/site-' . preg_replace('/[^0-9]/', '', $threadlink_port) . '.php';
if (!is_file($threadlink_site)) {
    header('HTTP/1.0 404 Not Found');
    exit('no threadlink test site on this port');
}
require $threadlink_site;
"""

_SITE = """<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', '%(db_password)s');
define('DB_HOST', '127.0.0.1:%(db_port)d');
define('WP_HOME', 'http://127.0.0.1:%(port)d');
define('WP_SITEURL', 'http://127.0.0.1:%(port)d');
define('WP_ENVIRONMENT_TYPE', 'local');  // application passwords over plain HTTP
define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
%(salts)s
"""

# Prints the admin's new application password (WordPress shows it once, then keeps a hash).
_APP_PASSWORD_PHP = """
$_SERVER['HTTP_HOST'] = '127.0.0.1:%(port)d';
define('WP_USE_THEMES', false);
require '/usr/share/wordpress/wp-load.php';
update_option('permalink_structure', '%(permalinks)s');
flush_rewrite_rules(false);
$user = get_user_by('login', '%(admin)s');
$made = WP_Application_Passwords::create_new_application_password($user->ID, array('name' => 'threadlink-%(tag)s'));
if (is_wp_error($made)) { fwrite(STDERR, $made->get_error_message()); exit(1); }
echo 'APPPASSWORD=' . $made[0] . "\\n";
"""


class WordPressError(RuntimeError):
    """WordPress could not be installed, prepared or started; the message says which and why."""


def _run(cmd: list[str], *, what: str, timeout: float, env: dict[str, str] | None = None, **kw: Any) -> str:
    return debian_packages.run(cmd, what=what, timeout=timeout, error=WordPressError, env=env, **kw)


def ensure_installed() -> float:
    """Install the packages unless they are; returns the seconds it took (0 when skipped)."""
    return debian_packages.ensure_installed(PACKAGES, error=WordPressError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to the process group (php -S forks workers; mariadbd runs under runuser), then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class WordPress:
    """One MariaDB and one PHP server; `start()` returns once the REST API answers with the
    application password, `stop()` ends both process groups and removes the site's files."""

    port: int = field(default_factory=free_port)
    db_port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wordpress-")))
    admin: str = ADMIN
    app_password: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    db_process: subprocess.Popen[bytes] | None = None
    php_process: subprocess.Popen[bytes] | None = None
    _db_password: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def site_file(self) -> Path:
        return SITES_DIR / f"site-{self.port}.php"

    def start(self) -> None:
        with SETUP_LOCK.open("w") as lock:  # one apt run and one /etc/wordpress edit at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.timings["install_s"] = ensure_installed()
            self._write_config()
        try:
            began = time.monotonic()
            self._start_mariadb()
            self.timings["mariadb_s"] = time.monotonic() - began
            began = time.monotonic()
            self._start_php()
            self._install_site()
            self.app_password = self._make_app_password()
            self.timings["wordpress_s"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        _stop_group(self.php_process)
        _stop_group(self.db_process)
        self.site_file.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- set-up steps ------------------------------------------------------------------------

    def _write_config(self) -> None:
        SITES_DIR.mkdir(parents=True, exist_ok=True)
        dispatch = _DISPATCH % {"sites": SITES_DIR}
        if HOST_CONFIG.exists() and "threadlink's tests" not in HOST_CONFIG.read_text():
            raise WordPressError(f"{HOST_CONFIG} is not the tests' own: left alone (a site of this machine's?)")
        if not HOST_CONFIG.exists() or HOST_CONFIG.read_text() != dispatch:
            HOST_CONFIG.write_text(dispatch)
        salts = "\n".join(
            f"define('{name}', '{secrets.token_hex(32)}');"
            for name in (
                "AUTH_KEY",
                "SECURE_AUTH_KEY",
                "LOGGED_IN_KEY",
                "NONCE_KEY",
                "AUTH_SALT",
                "SECURE_AUTH_SALT",
                "LOGGED_IN_SALT",
                "NONCE_SALT",
            )
        )
        site = _SITE % {"db_password": self._db_password, "db_port": self.db_port, "port": self.port, "salts": salts}
        self.site_file.write_text(site)
        self.site_file.chmod(0o644)

    def _start_mariadb(self, timeout: float = 60.0) -> None:
        data = self.workdir / "mysql"
        data.mkdir()
        shutil.chown(self.workdir, "mysql", "mysql")
        shutil.chown(data, "mysql", "mysql")
        _run(
            [
                "mariadb-install-db",
                "--user=mysql",
                f"--datadir={data}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            what="mariadb-install-db",
            timeout=120,
        )
        sock = self.workdir / "mysql.sock"
        with (self.workdir / "mariadb.log").open("wb") as log:  # the child keeps its own descriptor
            self.db_process = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    "--user=mysql",
                    f"--datadir={data}",
                    f"--socket={sock}",
                    f"--port={self.db_port}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    f"--pid-file={self.workdir / 'mysql.pid'}",
                    "--innodb-buffer-pool-size=64M",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals the whole server
            )
        sql = (
            "CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4;"
            f"CREATE USER IF NOT EXISTS 'wordpress'@'127.0.0.1' IDENTIFIED BY '{self._db_password}';"
            "GRANT ALL ON wordpress.* TO 'wordpress'@'127.0.0.1';"
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.db_process.poll() is not None:
                raise WordPressError(f"mariadbd exited with {self.db_process.returncode}: {self._tail('mariadb.log')}")
            done = subprocess.run(
                ["mariadb", f"--socket={sock}", "-uroot", "-e", sql], capture_output=True, text=True, check=False
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise WordPressError(f"MariaDB did not take connections within {timeout:.0f} s: {done.stderr[-500:]}")
            time.sleep(0.3)

    def _start_php(self, timeout: float = 30.0) -> None:
        with (self.workdir / "php.log").open("wb") as log:
            self.php_process = subprocess.Popen(
                ["runuser", "-u", "www-data", "--", "php", "-S", f"127.0.0.1:{self.port}", "-t", str(WORDPRESS_DIR)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.php_process.poll() is not None:
                raise WordPressError(f"php -S exited with {self.php_process.returncode}: {self._tail('php.log')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise WordPressError(f"php -S did not listen on {self.url} within {timeout:.0f} s")

    def _install_site(self) -> None:
        form = {
            "weblog_title": "threadlink tests",
            "user_name": self.admin,
            "admin_password": self._db_password,
            "admin_password2": self._db_password,
            "pw_weak": "1",
            "admin_email": "admin@example.org",
            "blog_public": "0",
        }
        request = urllib.request.Request(
            f"{self.url}/wp-admin/install.php?step=2", data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            page = response.read().decode("utf-8", "replace")
        if "Success!" not in page and "already installed" not in page:
            raise WordPressError(f"the install form did not succeed: {page[-1500:]}")

    def _make_app_password(self) -> str:
        php = _APP_PASSWORD_PHP % {
            "port": self.port,
            "admin": self.admin,
            "permalinks": PERMALINKS,
            "tag": secrets.token_hex(3),
        }
        out = _run(
            ["runuser", "-u", "www-data", "--", "php", "-r", php], what="php -r (application password)", timeout=60
        )
        for line in out.splitlines():
            if line.startswith("APPPASSWORD="):
                return line.removeprefix("APPPASSWORD=").strip()
        raise WordPressError(f"php -r printed no application password: {out[-500:]}")

    def _tail(self, name: str) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # -- admin REST calls the tests make (synchronous: they set the scene) ---------------------

    def request(self, method: str, path: str, body: Any = None, *, password: str | None = None) -> Any:
        """`path` under /wp-json/wp/v2 (e.g. `/posts`), as the admin with the application password."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/wp-json/wp/v2{path}", data=data, method=method)
        token = base64.b64encode(f"{self.admin}:{self.app_password if password is None else password}".encode())
        req.add_header("Authorization", f"Basic {token.decode()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def create(self, kind: str, title: str, content: str = "", **fields: Any) -> dict[str, Any]:
        """A post (`kind` posts) or page (pages), published unless `status` says otherwise."""
        return self.request("POST", f"/{kind}", {"title": title, "content": content, "status": "publish", **fields})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=19140)
    server = WordPress(port=parser.parse_args().port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as Ctrl-C does
    try:
        server.start()
        print(f"WordPress on {server.url}, {server.admin} / {server.app_password}; {server.timings}", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
