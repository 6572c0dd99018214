"""The sharded Kubernetes example: each StatefulSet pod polls the shard of its ordinal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from exporter.templates.sharding import Shard
from tests.kit.flags import check_exporter_argv, flag_value

ROOT = Path(__file__).resolve().parents[2]
SHARDED = ROOT / "deploy" / "kubernetes-sharded"


def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for doc in yaml.safe_load_all((SHARDED / "statefulset.yaml").read_text()):
        out[doc["kind"]] = doc
    return out


def test_statefulset_takes_its_shard_from_the_pod_ordinal() -> None:
    sts = docs()["StatefulSet"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    check_exporter_argv(args)
    replicas = sts["spec"]["replicas"]
    spec = flag_value(args, "--shard")
    assert spec == f"$(POD_INDEX)/{replicas}"
    env = {e["name"]: e for e in container["env"]}
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    # What each pod's exporter receives once Kubernetes substitutes $(POD_INDEX).
    shards = [Shard.parse(spec.replace("$(POD_INDEX)", str(i))) for i in range(replicas)]
    assert [s.index for s in shards] == list(range(replicas))
    assert {s.count for s in shards} == {replicas}


def test_statefulset_matches_the_single_replica_deployment() -> None:
    base = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    sts = docs()["StatefulSet"]
    (one,) = base["spec"]["template"]["spec"]["containers"]
    (many,) = sts["spec"]["template"]["spec"]["containers"]
    assert many["image"] == one["image"]
    assert many["ports"] == one["ports"]
    assert many["volumeMounts"] == one["volumeMounts"]
    assert flag_value(many["args"], "--config.file") == flag_value(one["args"], "--config.file")
    assert [e for e in many["env"] if e["name"] != "POD_INDEX"] == one["env"]
    assert sts["spec"]["selector"] == base["spec"]["selector"]
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    assert claims == ["state"]


def test_kustomization_replaces_the_deployment_and_its_volume() -> None:
    kustomization = yaml.safe_load((SHARDED / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../kubernetes", "statefulset.yaml"]
    deleted = {
        (p["kind"], p["metadata"]["name"])
        for p in (yaml.safe_load(patch["patch"]) for patch in kustomization["patches"])
        if p.get("$patch") == "delete"
    }
    assert deleted == {
        ("Deployment", "cams-exporter"),
        ("PersistentVolumeClaim", "cams-exporter-state"),
    }
    headless = docs()["Service"]
    assert headless["spec"]["clusterIP"] == "None"
    assert docs()["StatefulSet"]["spec"]["serviceName"] == headless["metadata"]["name"]
