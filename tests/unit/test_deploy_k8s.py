"""deploy/k8s, validated offline against the Kubernetes schemas that kubernetes-validate ships."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# Recent enough for autoscaling/v2 and the current NetworkPolicy schema; pinned so a
# kubernetes-validate upgrade cannot silently change what "valid" means.
K8S_VERSION = "1.32.0"


def _raw_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    """`kubectl kustomize` output when kubectl exists, else the raw files (namespace applied)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        docs = _raw_documents()
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = _kustomization()["namespace"]
        return docs
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("source", ["raw", "built"])
def test_every_resource_matches_the_kubernetes_schema(
    source: str, built: list[dict[str, Any]]
) -> None:
    docs = _raw_documents() if source == "raw" else built
    assert len(docs) >= 15
    for doc in docs:
        # strict: unknown fields (a typo like `readinessprobe`) fail too.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _get(_raw_documents(), "Deployment", "ttsgw-control-plane")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_everything_lands_in_the_ttsgw_namespace(built: list[dict[str, Any]]) -> None:
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ttsgw", doc["metadata"]["name"]


def test_envoy_runs_the_filter_as_a_localhost_sidecar(built: list[dict[str, Any]]) -> None:
    envoy = _get(built, "Deployment", "ttsgw-envoy")
    containers = _containers(envoy)
    assert set(containers) == {"envoy", "gateway-filter"}
    assert "--host=127.0.0.1" in containers["gateway-filter"]["args"]
    cp = _containers(_get(built, "Deployment", "ttsgw-control-plane"))["control-plane"]
    # The translator points Envoy's ext_proc cluster here, i.e. at the sidecar.
    assert "--ext-proc-host=127.0.0.1" in cp["args"]
    init = envoy["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][0] == "envoy-bootstrap" and "--xds-host=ttsgw-control-plane" in init["args"]
    hpa = _get(built, "HorizontalPodAutoscaler", "ttsgw-envoy")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ttsgw-envoy",
    }


def test_probes_are_wired_to_health_endpoints(built: list[dict[str, Any]]) -> None:
    expected = {
        ("ttsgw-control-plane", "control-plane"): ("/healthz", "/healthz"),
        ("ttsgw-envoy", "envoy"): ("/ready", "/ready"),
        ("ttsgw-envoy", "gateway-filter"): ("/readyz", "/healthz"),
        ("ttsgw-worker-espeak", "worker"): ("/ready", "/health"),
        ("ttsgw-worker-cosyvoice3", "worker"): ("/ready", "/health"),
    }
    for (deployment, container), (ready, live) in expected.items():
        c = _containers(_get(built, "Deployment", deployment))[container]
        assert c["readinessProbe"]["httpGet"]["path"] == ready, deployment
        assert c["livenessProbe"]["httpGet"]["path"] == live, deployment


def test_gpu_worker_requests_a_gpu_on_a_gpu_node(built: list[dict[str, Any]]) -> None:
    worker = _get(built, "Deployment", "ttsgw-worker-cosyvoice3")
    pod = worker["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert "--device=cuda" in pod["containers"][0]["args"]


def test_admin_and_xds_ports_are_closed_outside_the_namespace(
    built: list[dict[str, Any]],
) -> None:
    policies = [d for d in built if d["kind"] == "NetworkPolicy"]
    # Which (pod, port) pairs any rule opens to every source (no `from` = anywhere).
    open_to_all: set[tuple[str, int | None]] = set()
    guarded: set[str] = set()
    for policy in policies:
        selector = policy["spec"]["podSelector"]
        names = selector.get("matchLabels", {}).get("app.kubernetes.io/name")
        names = [names] if names else selector["matchExpressions"][0]["values"]
        guarded.update(names)
        for rule in policy["spec"]["ingress"]:
            if "from" not in rule:
                ports = [p["port"] for p in rule.get("ports", [])] or [None]
                open_to_all.update((n, p) for n in names for p in ports)
            else:
                # Same-namespace pods only: a bare podSelector, never a namespaceSelector.
                assert all(set(peer) == {"podSelector"} for peer in rule["from"])
    assert open_to_all == {("ttsgw-envoy", 10000)}
    deployments = {d["metadata"]["name"] for d in built if d["kind"] == "Deployment"}
    assert guarded == deployments
