"""deploy/helm/threadlink, checked without a cluster: `helm lint --strict`, and `helm template`
rendered with several sets of values and every manifest validated against Kubernetes' own
OpenAPI schemas (kubernetes-validate, strict: no unknown field) for the oldest and the newest
Kubernetes the chart supports; then what the deployment relies on, read from the rendered
manifests: one Deployment per connector, the workers autoscaled up to the partition count,
probes on /healthz (liveness) and /readyz (readiness), resources, secrets only from the existing
Secret, topics by a hook Job, and a config that threadlink loads.

Needs `helm`: scripts/test.sh builds it with `go install` (cached by Go); skipped when missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "threadlink"
#: The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", "1.37.0")

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def helm() -> str:
    found = shutil.which("helm", path=str(Path(sys.executable).parent)) or shutil.which("helm")
    if found is None:
        pytest.skip(
            "helm is not installed: scripts/test.sh builds it (GOBIN=.venv/bin go install "
            "helm.sh/helm/v3/cmd/helm@v3.21.4); without it the chart is not checked"
        )
    return found


@pytest.fixture(scope="module")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    def run(*sets: str, values: dict[str, Any] | None = None, kube: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
        args = [helm, "template", "rel", str(CHART), "--namespace", "tl", "--kube-version", kube]
        for item in sets:
            args += ["--set", item]
        if values is not None:
            path = tmp_path_factory.mktemp("values") / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            args += ["--values", str(path)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every Deployment and Job."""
    out = []
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        spec = doc["spec"]["template"]["spec"]
        out += [(doc["metadata"]["name"], spec, c) for c in spec["containers"]]
    return out


def test_helm_lint_strict(helm: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", "--kube-version", KUBE_VERSIONS[-1], str(CHART)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


VARIANTS = {
    "defaults": [],
    "fixed-workers-servicemonitor": ["workers.autoscaling.enabled=false", "serviceMonitor.enabled=true"],
    "no-topics-job": ["topics.enabled=false", "image.tag=1.2.3", "imagePullSecrets[0].name=registry"],
}


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_manifests_are_valid_kubernetes(render: Render, variant: str, kube: str) -> None:
    import kubernetes_validate

    docs = render(*VARIANTS[variant], kube=kube)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD's kind: checked by test_service_monitor_scrapes_both_jobs
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {kube}): {exc.message} at {exc.path}")


def test_one_deployment_per_connector(render: Render) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = render()
    deployments = {d["metadata"]["labels"].get("threadlink.io/connector"): d for d in of_kind(docs, "Deployment")}
    assert set(values["connectors"]) <= set(deployments)
    for name, connector in values["connectors"].items():
        deployment = deployments[name]
        assert deployment["spec"]["replicas"] == connector["replicas"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["connectors", "run", "--only", name]
        assert container["resources"] == connector["resources"]
        service = named(docs, "Service", deployment["metadata"]["name"])
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # A third connector is one more entry in the values.
    more = render(values={"connectors": {"matrix": {"replicas": 1}}, "config": {"connectors": {"matrix": {}}}})
    assert "rel-threadlink-connector-matrix" in {d["metadata"]["name"] for d in of_kind(more, "Deployment")}


def test_a_connector_without_config_is_refused(helm: str) -> None:
    result = subprocess.run(
        [
            helm,
            "template",
            "rel",
            str(CHART),
            "--kube-version",
            KUBE_VERSIONS[-1],
            "--set",
            "connectors.zendesk.replicas=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "connectors.zendesk has no config: add config.connectors.zendesk" in result.stderr


def test_workers_scale_up_to_the_partition_count(render: Render) -> None:
    from schemas.topics import STREAM_PARTITIONS

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["workers"]["partitions"] == STREAM_PARTITIONS
    (hpa,) = of_kind(render(), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rel-threadlink-streams",
    }
    assert hpa["spec"]["maxReplicas"] == STREAM_PARTITIONS
    # Asked for more than partitions, it still stops there; without autoscaling, so do replicas.
    (hpa,) = of_kind(render("workers.autoscaling.maxReplicas=50"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == STREAM_PARTITIONS
    fixed = render("workers.autoscaling.enabled=false", "workers.replicas=20")
    assert not of_kind(fixed, "HorizontalPodAutoscaler")
    assert named(fixed, "Deployment", "rel-threadlink-streams")["spec"]["replicas"] == STREAM_PARTITIONS
    # The autoscaler owns the replica count when it is on.
    assert "replicas" not in named(render(), "Deployment", "rel-threadlink-streams")["spec"]


def test_probes_resources_and_security(render: Render) -> None:
    from threadlink.config import Settings

    ports = {"connectors": Settings().http.port, "streams": Settings().streams.web_port}
    dockerfile_uid = re.search(r"^USER (\d+)", (ROOT / "deploy" / "docker" / "Dockerfile").read_text(), re.M)
    assert dockerfile_uid is not None
    for name, spec, container in containers(render()):
        assert container["resources"].get("requests") and container["resources"].get("limits"), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert str(spec["securityContext"]["runAsUser"]) == dockerfile_uid.group(1), "the image's user"
        assert spec["automountServiceAccountToken"] is False
        if container["args"][0] == "topics":
            continue
        by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
        process = "connectors" if container["args"][0] == "connectors" else "streams"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, name
            assert by_name[get["port"]] == ports[process], f"{name}: {probe} asks a port the process does not serve"
        annotations = {}
        for doc in of_kind(render(), "Deployment"):
            if doc["metadata"]["name"] == name:
                annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports[process])


def test_secrets_come_only_from_the_existing_secret(render: Render) -> None:
    docs = render("existingSecret=prod-threadlink")
    assert not of_kind(docs, "Secret"), "the chart creates no Secret: it takes an existing one"
    for name, _spec, container in containers(docs):
        assert container["envFrom"] == [{"secretRef": {"name": "prod-threadlink"}}], name
        for env in container.get("env", []):
            assert not re.search(r"SECRET|TOKEN|PASSWORD|KEY", env["name"]), f"{name}: {env['name']} set in the chart"
    for config_map in of_kind(docs, "ConfigMap"):
        text = config_map["data"]["threadlink.yaml"]
        assert not re.search(r"(secret|token|password)\s*:", text, re.I), config_map["metadata"]["name"]


def test_topics_are_applied_by_a_hook_job_before_install_and_upgrade(render: Render) -> None:
    docs = render()
    (job,) = of_kind(docs, "Job")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    from threadlink.cli import build_parser

    assert build_parser().parse_args(container["args"]).func.__name__ == "cmd_topics_apply"
    # Its config is a hook too, made before it (the release's ConfigMap does not exist yet then).
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    config_map = named(docs, "ConfigMap", volume["configMap"]["name"])
    assert config_map["metadata"]["annotations"]["helm.sh/hook"] == hooks["helm.sh/hook"]
    assert int(config_map["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    assert config_map["data"] == named(docs, "ConfigMap", "rel-threadlink")["data"]
    assert not of_kind(render("topics.enabled=false"), "Job")


def test_the_config_map_holds_a_config_threadlink_loads(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadlink.config import connector_config, load_settings

    docs = render()
    path = tmp_path / "threadlink.yaml"
    path.write_text(named(docs, "ConfigMap", "rel-threadlink")["data"]["threadlink.yaml"])
    for name in (
        "THREADLINK_CONNECTORS__SLACK__SIGNING_SECRET",
        "THREADLINK_CONNECTORS__SLACK__BOT_TOKEN",
        "THREADLINK_CONNECTORS__JIRA__API_TOKEN",
        "THREADLINK_CONNECTORS__JIRA__WEBHOOK_SECRET",
    ):
        monkeypatch.setenv(name, "placeholder")
    settings = load_settings(str(path))
    assert settings.http.host == "0.0.0.0" and settings.streams.web_host == "0.0.0.0"
    for name in settings.connectors:
        connector_config(settings, name)
    for _name, _spec, container in containers(docs):
        assert {"name": "THREADLINK_CONFIG", "value": "/etc/threadlink/threadlink.yaml"} in container["env"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        assert mount["mountPath"] == "/etc/threadlink" and mount["readOnly"] is True
    state = next(
        m
        for m in named(docs, "Deployment", "rel-threadlink-streams")["spec"]["template"]["spec"]["containers"][0][
            "volumeMounts"
        ]
        if m["name"] == "state"
    )
    assert state["mountPath"] == settings.streams.state_dir


def test_service_monitor_scrapes_both_jobs(render: Render) -> None:
    assert not of_kind(render(), "ServiceMonitor")
    docs = render("serviceMonitor.enabled=true", "environment=staging")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "threadlink.rules.yml").read_text()
    jobs = {s["metadata"]["labels"].get(monitor["spec"]["jobLabel"]) for s in of_kind(docs, "Service")}
    assert jobs == {"threadlink-connectors", "threadlink-streams"}
    for job in jobs:
        assert f'job="{job}"' in rules
    service_ports = {p["name"] for s in of_kind(docs, "Service") for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
        assert {"targetLabel": "environment", "replacement": "staging"} in endpoint["relabelings"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in of_kind(docs, "Service"):
        assert selector.items() <= service["metadata"]["labels"].items()


def test_disruption_budgets_cover_every_deployment_with_more_than_one_pod(render: Render) -> None:
    docs = render()
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        several = deployment["spec"].get("replicas", 2) > 1  # no replicas: the autoscaler's, at least 2
        selector = deployment["spec"]["selector"]["matchLabels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"] == selector]
        assert len(matching) == (1 if several else 0), deployment["metadata"]["name"]
    assert not of_kind(render("podDisruptionBudget.enabled=false"), "PodDisruptionBudget")
