"""A config typo gives every problem at once, each with its place, never a traceback or a secret."""

from pathlib import Path

import pytest

from connectors.registry import PLUGINS
from threadlink.cli import main
from threadlink.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

GOOD = """
kafka:
  bootstrap_servers: 127.0.0.1:9092
connectors:
  slack:
    signing_secret: s3cr3t-signing
    bot_token: xoxb-very-secret
  jira:
    base_url: https://acme.atlassian.net
    email: bot@acme.test
    api_token: jira-very-secret
    webhook_secret: hook-very-secret
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "threadlink.yaml"
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert set(settings.connectors) == {"slack", "jira"}
    assert settings.kafka.topics.commands("slack") == "threadlink.commands.slack"


def test_every_problem_is_reported_with_its_location(tmp_path: Path) -> None:
    bad = GOOD.replace("bootstrap_servers", "bootstrap_server").replace("    email: bot@acme.test\n", "")
    bad = bad.replace("api_token: jira-very-secret", "api_token: jira-very-secret\n    webhok_secret: x")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, bad))
    message = str(info.value)
    assert "kafka.bootstrap_server: unknown setting" in message
    assert "connectors.jira.email: required setting is missing" in message
    assert "connectors.jira.webhok_secret: unknown setting" in message


def test_unknown_connector_type_and_bad_pattern(tmp_path: Path) -> None:
    bad = GOOD + "  teams:\n    token: x\nstreams:\n  mention_patterns:\n    - {system: jira, regex: '[A-Z'}\n"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, bad))
    known = ", ".join(sorted(PLUGINS))  # every registered type, whichever connectors exist
    assert f"connectors.teams.type: unknown connector type 'teams'; known: {known}" in str(info.value)


def test_bad_pattern_is_reported(tmp_path: Path) -> None:
    bad = GOOD + "streams:\n  mention_patterns:\n    - {system: jira, regex: '[A-Z'}\n"
    with pytest.raises(ConfigError, match=r"streams.mention_patterns.0.regex: .*not a valid regular expression"):
        load_settings(write(tmp_path, bad))


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"threadlink.yaml: line [0-9]+, column [0-9]+: not valid YAML"):
        load_settings(write(tmp_path, "kafka:\n  namespace: a\n  bad: [unclosed\n"))


def test_cli_prints_problems_without_traceback_or_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("base_url: https://acme.atlassian.net", "base_url: 42"))
    assert main(["--config", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "connectors.jira.base_url" in err
    assert "Traceback" not in err
    assert "very-secret" not in err


def test_config_check_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(write(tmp_path, GOOD)), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "s3cr3t" not in out
    assert "acme.atlassian.net" in out


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINK_KAFKA__NAMESPACE", "staging")
    assert load_settings(write(tmp_path, GOOD)).kafka.namespace == "staging"


def test_mention_key_template_must_name_groups_of_its_regex(tmp_path: Path) -> None:
    bad = GOOD + "streams:\n  mention_patterns:\n    - {system: jira, regex: '(?P<n>[0-9]+)', key: 'X-{number}'}\n"
    with pytest.raises(ConfigError, match=r"streams.mention_patterns.0: .*'number' which is not a named group"):
        load_settings(write(tmp_path, bad))


REACH = """
streams:
  reach:
    rules:
      - name: outage
        match: {keywords: [outage]}
        notify: [{platform: slack, workspace: T1, channel: CLEADS}]
        subscribe: [{platform: teams, workspace: T1, user_id: U1}]
      - name: silent
        match: {channels: [C1]}
    first_answer:
      - name: gold
        match: {channels: [CSUP]}
        steps:
          - {after_s: 3600, notify: [{platform: matrix, workspace: hs, channel: "!r:hs"}]}
          - {after_s: 900, escalate: true}
"""


def test_reach_rules_and_tiers_report_every_problem_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, GOOD + REACH))
    message = str(info.value)
    assert (
        "streams.reach.rules.1: a rule needs an action: notify (channels), escalate: true, or subscribe (people)"
        in message
    )
    assert "streams.reach.first_answer.0: steps must come in order of after_s" in message
    fixed = REACH.replace("      - name: silent\n        match: {channels: [C1]}\n", "").replace(
        "after_s: 900, escalate", "after_s: 7200, escalate"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, GOOD + fixed))
    message = str(info.value)
    assert "streams.reach.first_answer.0.steps.0.notify.0.platform: 'matrix' is not a configured connector" in message
    assert "streams.reach.first_answer.0.steps.1.escalate: needs streams.escalate.target" in message
    assert "streams.reach.rules.0.subscribe.0.platform: 'teams' is not a configured connector" in message
    good = fixed.replace(
        'platform: matrix, workspace: hs, channel: "!r:hs"', "platform: slack, workspace: T1, channel: CALL"
    ).replace("platform: teams", "platform: slack")
    settings = load_settings(write(tmp_path, GOOD + good + "  escalate: {target: jira}\n"))
    assert [step.after_s for step in settings.streams.reach.first_answer[0].steps] == [3600, 7200]


def test_each_problem_names_its_line_and_column_in_the_file(tmp_path: Path) -> None:
    text = """kafka:
  bootstrap_servers: 127.0.0.1:9092
  namespce: prod
connectors:
  jira:
    base_url: ftp://acme
    email: bot@acme.com
streams:
  mention_patterns:
    - { system: jira, regex: '[unclosed' }
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert f"{path}:3:3: kafka.namespce: unknown setting" in "\n".join(lines)
    assert any(line.startswith(f"{path}:6:5: connectors.jira.base_url: ") for line in lines), lines
    # A missing setting is placed at the nearest enclosing one that is there.
    assert any(line.startswith(f"{path}:5:3: connectors.jira.api_token: required") for line in lines), lines
    assert any(line.startswith(f"{path}:10:23: streams.mention_patterns.0.regex: ") for line in lines), lines
