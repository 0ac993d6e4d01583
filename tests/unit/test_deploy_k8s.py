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


RELAY_URL = "http://ttsgw-span-relay:9412/api/v2/spans"
WORKERS = ("ttsgw-worker-espeak", "ttsgw-worker-cosyvoice3")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


def test_every_traced_component_reports_to_the_span_relay(built: list[dict[str, Any]]) -> None:
    relay = _containers(_get(built, "Deployment", "ttsgw-span-relay"))["span-relay"]
    assert relay["args"][0] == "span-relay" and "--host=0.0.0.0" in relay["args"]
    assert "TTSGW_TRACING_ZIPKIN_URL" in _env(relay)
    service = _get(built, "Service", "ttsgw-span-relay")
    assert [p["port"] for p in service["spec"]["ports"]] == [9412]
    assert "--port=9412" in relay["args"]

    cp = _containers(_get(built, "Deployment", "ttsgw-control-plane"))["control-plane"]
    assert _env(cp)["TTSGW_ZIPKIN_COLLECTOR"] == "ttsgw-span-relay:9412"
    envoy = _get(built, "Deployment", "ttsgw-envoy")
    init = envoy["spec"]["template"]["spec"]["initContainers"][0]
    assert "--zipkin-min-flush-spans=1000" in init["args"]
    emitters = {"gateway-filter": _env(_containers(envoy)["gateway-filter"])}
    assert emitters["gateway-filter"]["TTSGW_ZIPKIN_URL"] == RELAY_URL
    for worker in WORKERS:
        env = _env(_containers(_get(built, "Deployment", worker))["worker"])
        assert env["TTSGW_WORKER_ZIPKIN_URL"] == RELAY_URL, worker
        emitters[worker] = env
    # The relay and every emitter must apply the same rule (docs/tracing.md).
    for knob in ("TTSGW_TRACING_SAMPLE_RATIO", "TTSGW_TRACING_SLOW_THRESHOLD_MS"):
        values = {env[knob] for env in [*emitters.values(), _env(relay)]}
        assert len(values) == 1, knob
    assert _env(relay)["TTSGW_TRACING_SAMPLE_RATIO"] == "0.1"


def test_span_relay_accepts_spans_only_from_the_namespace(built: list[dict[str, Any]]) -> None:
    internal = _get(built, "NetworkPolicy", "ttsgw-internal")
    assert "ttsgw-span-relay" in internal["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert internal["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    assert _get(built, "Service", "ttsgw-span-relay")["spec"].get("type", "ClusterIP") == (
        "ClusterIP"
    )


def test_workers_share_a_persistent_redis_that_never_evicts_voices(
    built: list[dict[str, Any]],
) -> None:
    for worker in WORKERS:
        env = _env(_containers(_get(built, "Deployment", worker))["worker"])
        assert env["TTSGW_WORKER_REDIS_URL"] == "redis://ttsgw-redis:6379/0", worker
    redis = _get(built, "Deployment", "ttsgw-redis")
    container = _containers(redis)["redis"]
    args = container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert args[args.index("--save") + 1] != ""
    data_dir = args[args.index("--dir") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == data_dir)
    volume = next(
        v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert _get(built, "PersistentVolumeClaim", claim)
    # A second pod on the same ReadWriteOnce volume would not start.
    assert redis["spec"]["strategy"] == {"type": "Recreate"}


def _secrets_used(pod_spec: dict[str, Any]) -> set[str]:
    """Every Secret a pod reads: as env, envFrom or a mounted volume."""
    names = {v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for container in pod_spec["containers"]:
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    return names


def test_the_envoy_pod_mounts_only_the_dataplane_token(built: list[dict[str, Any]]) -> None:
    _get(built, "Secret", "ttsgw-admin-token")
    _get(built, "Secret", "ttsgw-dataplane-token")
    envoy = _get(built, "Deployment", "ttsgw-envoy")["spec"]["template"]["spec"]
    assert _secrets_used(envoy) == {"ttsgw-dataplane-token"}
    filter_ = _containers(_get(built, "Deployment", "ttsgw-envoy"))["gateway-filter"]
    mounted = {m["name"]: m["mountPath"] for m in filter_["volumeMounts"]}
    assert "--control-plane-token-file=" + mounted["dataplane-token"] + "/token" in filter_["args"]
    assert "TTSGW_ADMIN_TOKEN" not in {v["name"] for v in filter_.get("env", [])}


def test_the_control_plane_is_given_both_tokens(built: list[dict[str, Any]]) -> None:
    cp = _containers(_get(built, "Deployment", "ttsgw-control-plane"))["control-plane"]
    secrets = {
        v["name"]: v["valueFrom"]["secretKeyRef"]["name"] for v in cp["env"] if "valueFrom" in v
    }
    assert secrets["TTSGW_ADMIN_TOKEN"] == "ttsgw-admin-token"
    assert secrets["TTSGW_DATAPLANE_TOKEN"] == "ttsgw-dataplane-token"
