"""Installing the Debian packages a real server of the integration tests needs (Redmine,
WordPress), once per machine: idempotent, waiting for the dpkg lock (other processes on a CI
machine use apt too), and refreshing the package lists once when an install fails on stale ones."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

APT = ("apt-get", "-o", "DPkg::Lock::Timeout=600")


def run(cmd: list[str], *, what: str, timeout: float, error: type[Exception], env: dict[str, str] | None = None,
        **kw: Any) -> str:  # fmt: skip
    """`cmd`'s standard output; `error` with the tail of its output when it fails."""
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **(env or {})}, **kw
    )
    if done.returncode != 0:
        raise error(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def installed(packages: Sequence[str]) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\n", *packages], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.count("install ok installed") == len(packages)


def ensure_installed(packages: Sequence[str], *, error: type[Exception], preseed: str | None = None) -> float:
    """Install `packages` unless they are (debconf answers `preseed` first); returns the seconds
    it took (0 when skipped)."""
    if installed(packages):
        return 0.0
    if os.geteuid() != 0:
        raise error(f"the packages {', '.join(packages)} are missing and installing them needs root")
    started = time.monotonic()
    if preseed:
        run(["debconf-set-selections"], what="debconf preseed", timeout=60, error=error, input=preseed)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = [*APT, "install", "-y", "--no-install-recommends", *packages]
    if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        run([*APT, "update"], what="apt-get update", timeout=900, error=error, env=env)
    try:
        run(install, what="apt-get install", timeout=1200, error=error, env=env)
    except error:
        run([*APT, "update"], what="apt-get update", timeout=900, error=error, env=env)
        run(install, what="apt-get install", timeout=1200, error=error, env=env)
    return time.monotonic() - started
