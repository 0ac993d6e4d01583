"""docker-compose.yml, checked statically (no Docker engine runs here or in CI)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ttsgw.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (make setup installs it)")
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(yaml.safe_load(out.stdout))


def test_compose_has_every_service_of_the_stack(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert services["ext-proc"]["environment"]["TTSGW_REDIS_URL"] == "redis://redis:6379/0"
    assert set(services) >= {"redis"} | {
        "control-plane",
        "ext-proc",
        "worker-espeak",
        "worker-cosyvoice3",
        "envoy",
    }


def test_every_service_runs_a_real_ttsgw_command(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        if "build" not in service:
            continue  # third-party images: redis, zipkin, prometheus, grafana
        command = service["command"]
        first = command[0] if isinstance(command, list) else command.split()[0]
        if name == "envoy":
            assert "ttsgw envoy-bootstrap" in " ".join(command) and "envoy -c" in " ".join(command)
        else:
            assert first in COMMANDS, f"{name} runs unknown command {first!r}"


def test_observability_services_are_wired(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert services["zipkin"]["image"].startswith("openzipkin/zipkin")
    prometheus = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if ":" in v}
    assert (
        Path(mounts["/etc/prometheus/prometheus.yml"]) == ROOT / "deploy/prometheus/prometheus.yml"
    )
    # The scrape config reads the admin token from this file; the entrypoint must write it.
    assert "/prometheus/admin-token" in " ".join(prometheus["command"])
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert Path(mounts["/etc/grafana/provisioning"]) == ROOT / "deploy/grafana/provisioning"
    assert (
        Path(mounts["/var/lib/grafana/dashboards/ttsgw.json"]) == ROOT / "deploy/grafana/ttsgw.json"
    )


def test_envoy_admin_is_scrapable_but_not_published(compose: dict[str, object]) -> None:
    envoy = compose["services"]["envoy"]  # type: ignore[index]
    assert "--admin-address=0.0.0.0 --allow-public-admin" in " ".join(envoy["command"])
    published = [str(p.get("target") if isinstance(p, dict) else p) for p in envoy["ports"]]
    assert not any("9901" in p for p in published)


def test_cosyvoice3_worker_reserves_a_gpu_and_mounts_models(compose: dict[str, object]) -> None:
    worker = compose["services"]["worker-cosyvoice3"]  # type: ignore[index]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert any(v.split(":")[1] == "/models" for v in worker["volumes"])


RELAY = "http://span-relay:9412/api/v2/spans"
WORKERS = ("worker-espeak", "worker-cosyvoice3")


def test_every_traced_component_reports_to_the_span_relay(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    relay = services["span-relay"]
    assert relay["command"][0] == "span-relay" and "--host=0.0.0.0" in relay["command"]
    assert "--port=9412" in relay["command"]
    assert relay["environment"]["TTSGW_TRACING_ZIPKIN_URL"] == "http://zipkin:9411/api/v2/spans"
    assert services["control-plane"]["environment"]["TTSGW_ZIPKIN_COLLECTOR"] == "span-relay:9412"
    assert services["ext-proc"]["environment"]["TTSGW_ZIPKIN_URL"] == RELAY
    for worker in WORKERS:
        assert services[worker]["environment"]["TTSGW_WORKER_ZIPKIN_URL"] == RELAY, worker
    assert "--zipkin-min-flush-spans=1000" in " ".join(services["envoy"]["command"])
    # The relay and every emitter must apply the same rule (docs/tracing.md).
    traced = ("span-relay", "ext-proc", *WORKERS)
    ratios = {services[name]["environment"]["TTSGW_TRACING_SAMPLE_RATIO"] for name in traced}
    assert ratios == {"0.1"}
    slow = {services[name]["environment"]["TTSGW_TRACING_SLOW_THRESHOLD_MS"] for name in traced}
    assert len(slow) == 1


def test_workers_share_a_persistent_redis_that_never_evicts_voices(
    compose: dict[str, object],
) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for worker in WORKERS:
        env = services[worker]["environment"]
        assert env["TTSGW_WORKER_REDIS_URL"] == "redis://redis:6379/0", worker
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "volatile-lru"
    assert "allkeys-lru" not in command
    # Voices have no TTL and must survive a restart: snapshots to a named volume.
    assert command[command.index("--save") + 1] not in ("", '""')
    data_dir = command[command.index("--dir") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert mounts[data_dir] in compose["volumes"]  # type: ignore[operator]


def test_only_the_control_plane_holds_the_admin_token(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    holders = {
        name
        for name, service in services.items()
        if "TTSGW_ADMIN_TOKEN" in (service.get("environment") or {})
    }
    # Prometheus scrapes the control plane's /metrics, which needs the admin role.
    assert holders == {"control-plane", "prometheus"}
    control_plane = services["control-plane"]["environment"]
    ext_proc = services["ext-proc"]["environment"]
    assert ext_proc["TTSGW_CONTROL_PLANE_TOKEN"] == control_plane["TTSGW_DATAPLANE_TOKEN"]
    assert control_plane["TTSGW_DATAPLANE_TOKEN"] != control_plane["TTSGW_ADMIN_TOKEN"]
