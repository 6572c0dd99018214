"""The Helm chart (charts/cams-exporter) under the real Helm engine, its manifests validated.

helm-python-sdk (PyPI) binds the Helm v4 Go SDK: `helm.lint` and `Chart.render` are `helm lint`
and `helm template`, offline. The chart is linted and rendered with its default values and with
each ci/*-values.yaml (one shard, four shards, existing secrets, TLS on). Every rendered object is
validated (tests/kit/manifests.py): Kubernetes kinds by kubernetes-validate against the strict
schemas of Kubernetes 1.28 (the chart's oldest) and of the newest it knows, the ServiceMonitor
and PrometheusRule against the Prometheus Operator's CRDs. The PrometheusRule's groups pass
`promtool check rules` and equal prometheus/*.yml; the container's flags are the exporter's own
and the inline config passes `cams-exporter check-config`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.templates.sharding import Shard
from tests.kit.flags import check_exporter_argv, flag_value
from tests.kit.manifests import CRD_KINDS, KUBE_VERSIONS, validate_object, validate_operator_object

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cams-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = ["default", *(p.name for p in CI_VALUES)]
RELEASE, NAMESPACE = "cams", "monitoring"
FULLNAME = f"{RELEASE}-cams-exporter"
RULE_FILES = ("recording.yml", "alerts.yml", "sender_alerts.yml")
CONFIG_PATH = "/etc/cams-exporter/config.yml"
STATE_DIR = "/var/lib/cams-exporter"


def values_of(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    loaded = yaml.safe_load((CHART / "ci" / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


@cache
def objects(name: str) -> tuple[dict[str, Any], ...]:
    """Every object the chart renders with the named values (NOTES.txt aside)."""
    found = []
    for path, text in sorted(render(values_of(name)).items()):
        if path.endswith("NOTES.txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return tuple(found)


def of_kind(name: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects(name) if o["kind"] == kind]


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = of_kind(name, kind)
    return found


def workload(name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(name) if o["kind"] in {"Deployment", "StatefulSet"}]
    return found


def container(name: str) -> dict[str, Any]:
    (c,) = workload(name)["spec"]["template"]["spec"]["containers"]
    return c


def dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    uid, gid = users[-1]
    return int(uid), int(gid)


# --------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, values_of(name), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_manifest_validates(name: str) -> None:
    kinds = [o["kind"] for o in objects(name)]
    assert "Service" in kinds and ("Deployment" in kinds or "StatefulSet" in kinds), kinds
    checked = 0
    for obj in objects(name):
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        validate_object(obj)
        checked += 1
    assert checked == len(kinds) >= 2


def test_a_bad_manifest_does_not_validate() -> None:
    """The validation the test above relies on does reject a wrong field, of either kind."""
    deployment = json.loads(json.dumps(workload("default")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = (
        "/-/healthy"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    monitor = json.loads(json.dumps(one("tls-values.yaml", "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["tlsConfg"] = {}
    with pytest.raises(AssertionError, match="does not know"):
        validate_operator_object(monitor)
    monitor = json.loads(json.dumps(one("tls-values.yaml", "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(ValueError, match="interval"):
        validate_operator_object(monitor)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shards": 0}, "shards: must be at least 1, got 0"),
        ({"shards": 4, "persistence": {"existingClaim": "x"}}, "persistence.existingClaim"),
    ],
)
def test_bad_values_fail_with_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_chart_version_follows_the_exporter() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert container("default")["image"].endswith(f":{__version__}")


# --------------------------------------------------------------------------- shards


def test_one_shard_is_one_deployment_with_its_claim() -> None:
    name = "one-shard-values.yaml"
    deployment = one(name, "Deployment")
    assert of_kind(name, "StatefulSet") == []
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "--shard" not in container(name)["args"]
    claim = one(name, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


@pytest.mark.parametrize("shards", [2, 4, 7])
def test_n_shards_are_a_statefulset_whose_pods_take_their_ordinal(shards: int) -> None:
    rendered = [
        doc
        for path, text in render({"shards": shards}).items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    kinds = [d["kind"] for d in rendered]
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    (sts,) = [d for d in rendered if d["kind"] == "StatefulSet"]
    assert sts["spec"]["replicas"] == shards
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    spec = flag_value(c["args"], "--shard")
    assert spec == f"$(POD_INDEX)/{shards}"
    env = {e["name"]: e for e in c["env"]}
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    # what each pod's exporter receives once Kubernetes substitutes $(POD_INDEX)
    parsed = [Shard.parse(spec.replace("$(POD_INDEX)", str(i))) for i in range(shards)]
    assert [s.index for s in parsed] == list(range(shards))
    assert {s.count for s in parsed} == {shards}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    services = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Service"}
    assert services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    for obj in rendered:
        validate_object(obj)


def test_four_shards_claims_use_the_storage_values() -> None:
    (claim,) = one("four-shards-values.yaml", "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"


# --------------------------------------------------------------------------- the pod


@pytest.mark.parametrize("name", VALUE_SETS)
def test_container_flags_are_the_exporters(name: str) -> None:
    args = container(name)["args"]
    assert "command" not in container(name), "the image's ENTRYPOINT (cams-exporter) runs"
    check_exporter_argv(args)
    assert flag_value(args, "--config.file") == CONFIG_PATH
    port = int(flag_value(args, "--web.listen-address").rsplit(":", 1)[1])
    assert container(name)["ports"] == [
        {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    ]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_non_root_read_only_and_probed(name: str) -> None:
    pod = workload(name)["spec"]["template"]["spec"]
    uid, gid = dockerfile_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        uid,
        gid,
    )
    c = container(name)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    scheme = "HTTPS" if name == "tls-values.yaml" else "HTTP"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics"
        assert c[probe]["httpGet"]["scheme"] == scheme
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[str(Path(CONFIG_PATH).parent)] == "config"
    assert mounts[STATE_DIR] == "state"


def config_text(name: str) -> str:
    return str(one(name, "ConfigMap")["data"]["config.yml"])


@pytest.mark.parametrize("name", ["default", "four-shards-values.yaml"])
def test_inline_config_passes_check_config(name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(config_text(name))
    config = yaml.safe_load(path.read_text())
    assert Path(config["state"]["path"]).parent == Path(STATE_DIR)
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_credentials_come_from_the_secret_the_config_reads() -> None:
    name = "four-shards-values.yaml"
    env = {e["name"]: e for e in container(name)["env"]}
    refs = {
        k: env[k]["valueFrom"]["secretKeyRef"]
        for k in (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
        )
    }
    assert {r["name"] for r in refs.values()} == {"cams-exporter-credentials"}
    assert refs["ALIBABA_CLOUD_SECURITY_TOKEN"]["key"] == "ALIBABA_CLOUD_SECURITY_TOKEN"
    for variable in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        assert "${" + variable + "}" in config_text(name)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_never_holds_a_secret(name: str) -> None:
    assert of_kind(name, "Secret") == []


def test_existing_config_keys_web_config_and_claim_are_used() -> None:
    name = "existing-secrets-values.yaml"
    assert of_kind(name, "ConfigMap") == []
    assert of_kind(name, "PersistentVolumeClaim") == []
    assert of_kind(name, "ServiceAccount") == []
    pod = workload(name)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "monitoring"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "my-cams-config"
    assert volumes["web-config"]["secret"]["secretName"] == "my-cams-web"
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "my-cams-state"
    c = container(name)
    assert flag_value(c["args"], "--web.config.file") == "/etc/cams-exporter/web/web.yml"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["web-config"] == "/etc/cams-exporter/web"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"] == {"name": "my-cams-keys", "key": "id"}
    assert env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] == {"name": "my-cams-keys", "key": "secret"}
    headers = c["readinessProbe"]["httpGet"]["httpHeaders"]
    assert headers[0]["name"] == "Authorization"


def test_tls_switches_probes_and_scrapes_to_https() -> None:
    name = "tls-values.yaml"
    endpoint = one(name, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "cams-exporter-web"
    volumes = {v["name"]: v for v in workload(name)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}
    assert "--web.enable-lifecycle" in container(name)["args"]


# --------------------------------------------------------------------------- Prometheus Operator


@pytest.mark.parametrize("name", ["one-shard-values.yaml", "four-shards-values.yaml"])
def test_service_monitor_scrapes_the_service_once(name: str) -> None:
    monitor = one(name, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s for s in of_kind(name, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    (service,) = selected  # the StatefulSet's headless Service is not scraped a second time
    assert service["metadata"]["name"] == FULLNAME
    pod_labels = workload(name)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for file in RULE_FILES:
        groups += yaml.safe_load((ROOT / "prometheus" / file).read_text())["groups"]
    return groups


def test_prometheus_rule_equals_the_rule_files() -> None:
    rule = one("one-shard-values.yaml", "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == rule_groups(), (
        "charts/cams-exporter/files/prometheus-rules.yaml is out of date: "
        "run python -m mixin.generate"
    )


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package `prometheus`)"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(one("four-shards-values.yaml", "PrometheusRule")["spec"]))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_operator_objects_only_when_enabled() -> None:
    kinds = {o["kind"] for o in objects("default")}
    assert not kinds & CRD_KINDS


# --------------------------------------------------------------------------- notes and docs


def notes(values: dict[str, Any]) -> str:
    (text,) = [t for p, t in render(values).items() if p.endswith("NOTES.txt")]
    return text


def test_notes_say_what_is_missing_and_how_to_reach_the_exporter() -> None:
    bare = notes({})
    assert "credentials.existingSecret" in bare
    assert f"port-forward svc/{FULLNAME} 10731" in bare
    done = notes(values_of("four-shards-values.yaml"))
    assert "credentials.existingSecret" not in done
    assert "a StatefulSet of 4 shards" in done


# Values documented as one object (what they hold is Kubernetes' or the exporter's own format).
WHOLE = {
    "config.inline",
    "probes.liveness",
    "probes.readiness",
    "podSecurityContext",
    "securityContext",
    "resources",
}


def leaf_keys(value: Any, prefix: str = "") -> Iterator[str]:
    """Documented keys: every key down to a leaf, a list, or one of WHOLE."""
    if isinstance(value, dict) and value and prefix not in WHOLE:
        for key, inner in value.items():
            yield from leaf_keys(inner, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([\w.]+)` \|", readme, re.MULTILINE))
    keys = set(leaf_keys(values))
    assert keys - documented == set(), "values without a row in charts/cams-exporter/README.md"
    assert documented - keys == set(), "rows for values that do not exist"
