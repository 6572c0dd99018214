"""Kubernetes objects against their schemas: Kubernetes' own (kubernetes-validate, strict: no
unknown field) and the Prometheus Operator's CRDs (cloudcoil-models-prometheus-operator, models
generated from them: types, enums, patterns, required fields, and here unknown fields too).

The operator's models load on first use: 2.7 s of CPU (4,000 pydantic classes) that every
xdist worker would otherwise pay while collecting, for the two modules that validate objects.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import kubernetes_validate

CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
# The oldest Kubernetes the chart supports (apps.kubernetes.io/pod-index), and the newest known.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


@functools.cache
def _operator() -> ModuleType:
    """The Prometheus Operator's v1 models (ServiceMonitor, PrometheusRule, ...)."""
    from cloudcoil.models.prometheus_operator import v1

    return v1


def validate_operator_object(obj: dict[str, Any]) -> None:
    """A ServiceMonitor or PrometheusRule against the operator's CRD schema, strictly: a field
    the schema does not know fails too (the API server would drop it, kubectl's strict field
    validation would refuse it)."""
    model = getattr(_operator(), obj["kind"]).model_validate(obj)
    kept = model.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
    assert kept == obj, f"fields the {obj['kind']} schema does not know were dropped"


def validate_object(obj: dict[str, Any]) -> None:
    """Any object the chart or the kustomization makes, at every version of KUBE_VERSIONS."""
    if obj["kind"] in CRD_KINDS:
        validate_operator_object(obj)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)
