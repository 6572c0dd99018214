"""deploy/: the docker-compose stack and the Kubernetes manifests agree with the real exporter.

deploy/kubernetes (plain manifests for `kubectl apply -k`, for those who do not use Helm) is built
with the real kustomize and validated like the chart's manifests
(tests/artifacts/test_helm_chart.py).

Commands and flags are checked against what `python -m exporter --help` prints, paths against the
Dockerfile, rule files and dashboards against the files in the repository, and the Prometheus
config of the stack with `promtool check config`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.kit.flags import check_exporter_argv, flag_value
from tests.kit.manifests import validate_object

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
EXPORTER_PORT = 10731
CONFIG_PATH = "/etc/cams-exporter/config.yml"
STATE_DIR = "/var/lib/cams-exporter"


# --------------------------------------------------------------------------- helpers


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def mounts(svc: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (relative to deploy/) or named volume, of a compose service."""
    found = {}
    for volume in svc.get("volumes", []):
        parts = volume.split(":")
        found[parts[1]] = parts[0]
    return found


def host_path(source: str) -> Path:
    return (DEPLOY / source).resolve()


@cache
def k8s_docs() -> dict[tuple[str, str], dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def k8s(kind: str) -> dict[str, Any]:
    (doc,) = [d for (k, _), d in k8s_docs().items() if k == kind]
    return doc


def dockerfile() -> dict[str, Any]:
    """The Dockerfile's final-stage facts the deployments must match."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    get = {line.split()[0]: line.split(None, 1)[1] for line in final}
    return {
        "entrypoint": json.loads(get["ENTRYPOINT"]),
        "cmd": json.loads(get["CMD"]),
        "user": get["USER"],
        "expose": int(get["EXPOSE"]),
        "volumes": json.loads(get["VOLUME"]),
    }


def check_config(path: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- docker-compose


def test_compose_services() -> None:
    assert set(compose()["services"]) == {"simulator", "exporter", "prometheus", "grafana"}
    for name in ("simulator", "exporter"):
        svc = service(name)
        assert svc["build"]["context"] == ".."
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert service("simulator")["image"] == service("exporter")["image"]
    for name in ("prometheus", "grafana"):
        image = service(name)["image"]
        assert ":" in image and not image.endswith(":latest"), image


def test_compose_commands_use_real_flags() -> None:
    entry = dockerfile()["entrypoint"]
    assert entry == ["cams-exporter"]
    for name in ("simulator", "exporter"):
        command = service(name)["command"]
        assert isinstance(command, list)
        check_exporter_argv(command)
    assert service("simulator")["command"][0] == "simulate"
    check_exporter_argv(dockerfile()["cmd"])


def test_compose_ports() -> None:
    exporter = service("exporter")
    listen = flag_value(exporter["command"], "--web.listen-address")
    assert port_of(listen) == EXPORTER_PORT == dockerfile()["expose"]
    assert f"{EXPORTER_PORT}:{EXPORTER_PORT}" in exporter["ports"]
    simulator = service("simulator")
    sim_port = port_of(flag_value(simulator["command"][1:], "--listen"))
    assert str(sim_port) in simulator["expose"]
    assert str(sim_port) in " ".join(simulator["healthcheck"]["test"])
    # the exporter's config points at the simulator service and its port
    config_source = mounts(exporter)[CONFIG_PATH]
    config = yaml.safe_load(host_path(config_source).read_text())
    endpoint = urlsplit(config["accounts"][0]["endpoint"])
    assert (endpoint.hostname, endpoint.port) == ("simulator", sim_port)
    assert exporter["depends_on"]["simulator"]["condition"] == "service_healthy"


def test_compose_exporter_paths_match_the_image() -> None:
    exporter = service("exporter")
    assert flag_value(exporter["command"], "--config.file") == CONFIG_PATH
    assert flag_value(dockerfile()["cmd"], "--config.file") == CONFIG_PATH
    volumes = mounts(exporter)
    assert host_path(volumes[CONFIG_PATH]).is_file()
    assert STATE_DIR in volumes and STATE_DIR in dockerfile()["volumes"]
    assert volumes[STATE_DIR] in compose()["volumes"]
    config = yaml.safe_load(host_path(volumes[CONFIG_PATH]).read_text())
    assert Path(config["state"]["path"]).parent == Path(STATE_DIR)


def test_compose_demo_config_is_valid() -> None:
    check_config(host_path(mounts(service("exporter"))[CONFIG_PATH]))


def prometheus_config() -> dict[str, Any]:
    source = mounts(service("prometheus"))["/etc/prometheus/prometheus.yml"]
    return yaml.safe_load(host_path(source).read_text())


def test_compose_prometheus_scrapes_the_exporter_and_loads_the_rules() -> None:
    prom = service("prometheus")
    assert flag_value(prom["command"], "--config.file") == "/etc/prometheus/prometheus.yml"
    config = prometheus_config()
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"exporter:{EXPORTER_PORT}" in targets
    volumes = mounts(prom)
    loaded = set()
    for rule_file in config["rule_files"]:
        assert rule_file in volumes, f"{rule_file} is not mounted"
        loaded.add(host_path(volumes[rule_file]))
    assert loaded == {
        (ROOT / "prometheus" / "alerts.yml").resolve(),
        (ROOT / "prometheus" / "recording.yml").resolve(),
    }


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package `prometheus`)"
    config = prometheus_config()
    volumes = mounts(service("prometheus"))
    config["rule_files"] = [str(host_path(volumes[f])) for f in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_compose_grafana_provisioning() -> None:
    grafana = service("grafana")
    volumes = mounts(grafana)
    for target in ("/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards"):
        source = host_path(volumes[target])
        assert source.is_dir() and list(source.glob("*.yml")), target
    provider_file = host_path(volumes["/etc/grafana/provisioning/dashboards"]) / "cams.yml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    dash_dir = provider["options"]["path"]
    assert host_path(volumes[dash_dir]) == (ROOT / "grafana" / "dashboards").resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_dir + "/")
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).is_file()
    ds_file = host_path(volumes["/etc/grafana/provisioning/datasources"]) / "prometheus.yml"
    (ds,) = yaml.safe_load(ds_file.read_text())["datasources"]
    url = urlsplit(ds["url"])
    assert url.hostname == "prometheus"
    assert f"{url.port}:{url.port}" in service("prometheus")["ports"]


# --------------------------------------------------------------------------- kubernetes


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    (image,) = kustomization["images"]
    assert image["name"] == container()["image"].split(":")[0]


def test_k8s_manifests_parse_with_kinds() -> None:
    kinds = {kind for kind, _ in k8s_docs()}
    assert {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "Secret",
        "ConfigMap",
    } <= kinds
    for doc in k8s_docs().values():
        assert doc["apiVersion"] and doc["metadata"]["name"]


def container() -> dict[str, Any]:
    (c,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def test_k8s_deployment_command_and_ports() -> None:
    c = container()
    assert "command" not in c, "the image's ENTRYPOINT (cams-exporter) runs"
    check_exporter_argv(c["args"])
    assert flag_value(c["args"], "--config.file") == CONFIG_PATH
    assert port_of(flag_value(c["args"], "--web.listen-address")) == EXPORTER_PORT
    (port,) = c["ports"]
    assert port["containerPort"] == EXPORTER_PORT


def test_k8s_deployment_paths_match_the_image() -> None:
    c = container()
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
    config_volume = mounted[str(Path(CONFIG_PATH).parent)]
    configmap = k8s("ConfigMap")
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert Path(CONFIG_PATH).name in configmap["data"]
    assert STATE_DIR in mounted and STATE_DIR in dockerfile()["volumes"]
    config = yaml.safe_load(configmap["data"][Path(CONFIG_PATH).name])
    assert Path(config["state"]["path"]).parent == Path(STATE_DIR)
    claim = mounted[STATE_DIR]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in k8s_docs()


def test_k8s_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(k8s("ConfigMap")["data"]["config.yml"])
    check_config(
        config,
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret"},
    )


def test_k8s_keys_come_from_the_secret() -> None:
    secret = k8s("Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    env = {e["name"]: e for e in container()["env"]}
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys
        # and the config reads exactly these variables
        assert "${" + name + "}" in k8s("ConfigMap")["data"]["config.yml"]


def test_k8s_probes() -> None:
    c = container()
    port_name = c["ports"][0]["name"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": port_name}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": port_name}


def test_k8s_security_context_matches_the_image_user() -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    uid, gid = dockerfile()["user"].split(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_service_and_service_monitor_select_the_exporter() -> None:
    deployment = k8s("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = k8s("Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == EXPORTER_PORT
    assert port["targetPort"] == container()["ports"][0]["name"]
    monitor = k8s("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"


def test_k8s_prometheus_rule_equals_the_rule_files() -> None:
    groups = []
    for name in ("recording.yml", "alerts.yml"):
        groups += yaml.safe_load((ROOT / "prometheus" / name).read_text())["groups"]
    rule = k8s("PrometheusRule")
    assert rule["spec"]["groups"] == groups, (
        "deploy/kubernetes/prometheusrule.yaml is out of date: run python -m mixin.generate"
    )


@cache
def kustomize_build() -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/kubernetes`: the real kustomize (built into kubectl, which the
    machine image ships) applies the kustomization as `kubectl apply -k` would."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (it carries kustomize)"
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def test_kustomize_builds_every_manifest_into_the_namespace_with_the_image() -> None:
    built = kustomize_build()
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == set(k8s_docs())
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"], doc["metadata"]
    (deployment,) = [d for d in built if d["kind"] == "Deployment"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    (image,) = kustomization["images"]
    assert c["image"] == f"{image['newName']}:{image['newTag']}"


def test_kustomize_output_validates() -> None:
    """Every built object against Kubernetes' strict schemas (no unknown field), and the
    operator's objects against its CRDs, as the chart's are (tests/kit/manifests.py)."""
    built = kustomize_build()
    for doc in built:
        validate_object(doc)
    assert len(built) == len(k8s_docs())


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_k8s_files_have_no_real_secrets(path: Path) -> None:
    text = path.read_text()
    assert "demo-secret" not in text
    assert not re.search(r"LTAI[0-9A-Za-z]{12,}", text), "looks like a real AccessKey id"


# --------------------------------------------------------------------------- docs

# The pages about running it: metrics, queries, dashboards, alerts, deployment.
OPS_PAGES = ("metrics.md", "promql.md", "dashboards.md", "alerts.md", "deployment.md")


def ops_section() -> str:
    return "\n".join((ROOT / "docs" / page).read_text() for page in OPS_PAGES)


def test_docs_metrics_table_covers_the_design() -> None:
    design = (ROOT / "docs" / "design.md").read_text()
    designed = set(re.findall(r"^\| `(cams_\w+)` \|", design, re.MULTILINE))
    assert len(designed) >= 20
    rows = re.findall(r"^\| `(cams_\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", ops_section(), re.M)
    documented = {name for name, *_ in rows}
    assert designed <= documented, designed - documented
    for name, kind, labels, meaning in rows:
        assert kind.split()[0] in {"counter", "gauge", "histogram"}, name
        assert labels.strip() and meaning.strip(), name


def test_docs_commands_and_paths() -> None:
    section = ops_section()
    for text in (
        "docker compose -f deploy/docker-compose.yml up",
        "kubectl apply -k deploy/kubernetes",
        "docker build -t cams-exporter .",
        CONFIG_PATH,
        f"{STATE_DIR}/state.json",
        "topk(10,",
        "cams_template_button_clicks_total",
    ):
        assert text in section, text
    # every repository path the section names exists
    for path in set(re.findall(r"`((?:deploy|grafana|prometheus)/[\w./-]+)`", section)):
        assert (ROOT / path.rstrip("/")).exists() or "*" in path, path
