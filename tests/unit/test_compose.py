"""Static checks of docker-compose.yml, the Dockerfile and the files they mount (no Docker engine here)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from processor.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

TOP_LEVEL_KEYS = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?"
    r"(?:(?P<host>\d{1,5}(?:-\d{1,5})?):)?(?P<container>\d{1,5}(?:-\d{1,5})?)(?:/(?P<proto>tcp|udp|sctp))?$"
)


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(COMPOSE) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def _ports_in_range(spec: str) -> bool:
    return all(1 <= int(p) <= 65535 for p in re.findall(r"\d+", spec))


def test_top_level_keys_are_valid(compose):
    unknown = {k for k in compose if k not in TOP_LEVEL_KEYS and not str(k).startswith("x-")}
    assert not unknown, f"unknown top-level keys: {unknown}"
    assert compose["services"], "no services"


def test_expected_services(services):
    assert {"kafka", "clickhouse", "processor", "prometheus", "grafana"} <= set(services)


def test_every_service_has_image_or_build(services):
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name


def test_pinned_images(services):
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    assert images["kafka"] == "apache/kafka:3.8.0"
    assert images["clickhouse"] == "clickhouse/clickhouse-server:24.8"
    assert images["prometheus"].startswith("prom/prometheus")
    assert images["grafana"].startswith("grafana/grafana")
    for name, image in images.items():
        assert not image.endswith(":latest") or "build" in services[name], f"{name}: unpinned {image}"


def test_depends_on_targets_exist_with_valid_conditions(services):
    for name, svc in services.items():
        for target, spec in _depends(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            condition = (spec or {}).get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}: no healthcheck"


def test_no_dependency_cycle(services):
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", f"cycle: {' -> '.join(path + [node])}"
        state[node] = "active"
        for target in _depends(services[node]):
            visit(target, path + [node])
        state[node] = "done"

    for name in services:
        visit(name, [])


def test_healthchecks_are_well_formed(services):
    for name in ("kafka", "clickhouse", "processor", "prometheus", "grafana"):
        hc = services[name].get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        test = hc["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_mounted_local_files_exist(services):
    checked = 0
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source", "") if isinstance(vol, dict) else vol.split(":", 1)[0]
            if source.startswith((".", "/")):
                path = (ROOT / source).resolve() if source.startswith(".") else Path(source)
                assert path.exists(), f"{name} mounts missing {source}"
                assert ROOT in path.parents or path == ROOT, f"{name} mounts {source} outside the repository"
                checked += 1
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            assert (ROOT / env_file).exists(), f"{name}: env_file {env_file} missing"
    assert checked >= 2


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source", "") if isinstance(vol, dict) else vol.split(":", 1)[0]
            if source and not source.startswith((".", "/", "~", "$")) and ":" in str(vol):
                assert source in declared, f"{name}: volume {source} not declared at top level"


def test_build_contexts_and_dockerfile(services):
    for name, svc in services.items():
        if "build" not in svc:
            continue
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context).is_dir(), name
        assert (ROOT / context / dockerfile).is_file(), name


def test_dockerfile_copies_existing_paths():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_port_mappings_are_well_formed(services):
    host_ports: dict[str, str] = {}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                assert 1 <= int(port["target"]) <= 65535, name
                published = str(port.get("published", ""))
                assert not published or _ports_in_range(published), name
                key = published
            else:
                assert isinstance(port, str), f"{name}: write port mappings as quoted strings ({port!r})"
                m = PORT_RE.match(port)
                assert m, f"{name}: malformed port mapping {port!r}"
                assert _ports_in_range(m.group("container")), port
                if m.group("host"):
                    assert _ports_in_range(m.group("host")), port
                key = m.group("host") or ""
            if key:
                assert key not in host_ports, f"host port {key} published by {host_ports[key]} and {name}"
                host_ports[key] = name


def test_kafka_runs_in_kraft_mode(services):
    env = _env(services["kafka"])
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    assert "zookeeper" not in " ".join(env).lower()
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    protocol_map = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in env["KAFKA_LISTENERS"].split(","):
        assert listener.split("://")[0] in protocol_map, listener
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_processor_environment_matches_settings(services):
    known = {"INCENTIVES_" + f.name.upper() for f in fields(Settings)}
    for name in ("processor", "migrate"):
        env = _env(services[name])
        unknown = {k for k in env if k.startswith("INCENTIVES_") and k not in known}
        assert not unknown, f"{name}: variables processor.config does not read: {unknown}"
        assert env["INCENTIVES_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["INCENTIVES_CLICKHOUSE_HOST"] == "clickhouse"
    command = services["processor"]["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[:5] == ["faust", "-A", "processor.stream.app", "worker", "-l"]
    assert "6066" in command and "0.0.0.0" in command


def test_prometheus_scrapes_the_worker():
    local = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    compose_cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.compose.yml").read_text())
    for cfg, target in ((local, "127.0.0.1:6066"), (compose_cfg, "processor:6066")):
        jobs = cfg["scrape_configs"]
        targets = [t for job in jobs for sc in job["static_configs"] for t in sc["targets"]]
        assert target in targets
        assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)


def test_grafana_provisions_clickhouse(services):
    env = _env(services["grafana"])
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"]
    ds_file = ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yml"
    cfg = yaml.safe_load(ds_file.read_text())
    assert cfg["apiVersion"] == 1
    by_type = {d["type"]: d for d in cfg["datasources"]}
    ch = by_type["grafana-clickhouse-datasource"]
    assert ch["jsonData"]["host"] == "clickhouse"
    assert ch["jsonData"]["protocol"] in ("native", "http")
    assert ch["jsonData"]["defaultDatabase"] == "incentives"
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    # the variables the data source expands are set on the grafana service
    for var in re.findall(r"\$\{(\w+)\}", ds_file.read_text()):
        assert var in env, f"grafana service does not set {var}"
