"""Static checks of docker-compose.yml, the Dockerfile and the files they mount (no Docker engine here)."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GRAFANA_PROVISIONING = ROOT / "deploy/grafana/provisioning"
GRAFANA_DASHBOARDS = ROOT / "deploy/grafana/dashboards"
CLICKHOUSE_USERS_D = ROOT / "deploy/clickhouse/compose-users.d"

TOP_LEVEL_KEYS = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?"
    r"(?:(?P<host>\d{1,5}(?:-\d{1,5})?):)?(?P<container>\d{1,5}(?:-\d{1,5})?)(?:/(?P<proto>tcp|udp|sctp))?$"
)


# --- closed by default (issue 9, item 5) -------------------------------------------------------------
# Every published port binds to this one variable, loopback unless the operator says otherwise.
BIND_VAR = "INCENTIVES_BIND_ADDRESS"
BIND_REF = "${INCENTIVES_BIND_ADDRESS:-127.0.0.1}"
# Variables compose must refuse to start without (no default anywhere).
REQUIRED_VARS = {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_USER", "GRAFANA_ADMIN_PASSWORD"}
# An example .env for the interpolation tests (never a real secret).
SAMPLE_ENV = {
    "CLICKHOUSE_PASSWORD": "ch-secret",
    "CLICKHOUSE_READER_PASSWORD": "ch-reader-secret",
    "GRAFANA_ADMIN_USER": "gf-admin",
    "GRAFANA_ADMIN_PASSWORD": "gf-secret",
}

SECRET_NAME_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL", re.IGNORECASE)
# Keys that are not secrets but must not have a well-known default either (Grafana's admin login).
REQUIRED_KEYS = {"GF_SECURITY_ADMIN_USER"}
REQUIRED_REF_RE = re.compile(r"\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
# ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?x}, ${VAR?x}, ${VAR:+x}, ${VAR+x}, $VAR; $$ is a literal $
INTERPOLATION_RE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
# literal credentials inside strings (commands, healthchecks, URLs, NAME=value pairs)
INLINE_SECRET_RES = (
    re.compile(r"--password[= ]+(?P<value>\S+)"),
    re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:(?P<value>[^/\s@]+)@"),
    re.compile(r"\b\w*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY)\w*=(?P<value>\S+)", re.IGNORECASE),
)
# a reference to the container's own environment inside a command or healthcheck of the raw file ($$NAME or
# $${NAME}; compose turns $$ into $), accepted only if that service sets NAME to a required ${VAR:?msg}
CONTAINER_REF_RE = re.compile(r"\$\$\{?(?P<var>[A-Za-z_][A-Za-z0-9_]*)\}?")


class MissingVariable(Exception):
    """What `docker compose` reports for ${VAR:?msg} / ${VAR?msg} when VAR is missing: it refuses to start."""

    def __init__(self, var: str, message: str) -> None:
        super().__init__(f"required variable {var} is missing a value: {message}")
        self.var = var


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (values only, as compose does), against `env` alone."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        var = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(var)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?"):
            if missing:
                raise MissingVariable(var, arg)
            return str(current)
        if op in (":+", "+"):
            return "" if missing else arg
        return current or ""

    return INTERPOLATION_RE.sub(substitute, value)


def _walk_strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def port_problems(compose: dict) -> list[str]:
    """Published ports that are not bound to BIND_REF (loopback unless INCENTIVES_BIND_ADDRESS says otherwise)."""
    problems = []
    string_re = re.compile(re.escape(BIND_REF) + r":\d{1,5}(?:-\d{1,5})?:\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|sctp))?")
    for name, svc in (compose.get("services") or {}).items():
        if str(svc.get("network_mode", "")).startswith("host"):
            problems.append(f"{name}: network_mode host publishes every port on every interface")
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                if port.get("host_ip") != BIND_REF or not port.get("published"):
                    problems.append(f"{name}: port {port!r} must set published and host_ip: {BIND_REF!r}")
            elif not (isinstance(port, str) and string_re.fullmatch(port)):
                problems.append(f"{name}: port {port!r} must be \"{BIND_REF}:HOST:CONTAINER\"")
    return problems


def _is_container_ref_to_required(value: str, env: Mapping[str, str] | None) -> bool:
    m = CONTAINER_REF_RE.fullmatch(value)
    if not m:
        return False
    return env is None or bool(REQUIRED_REF_RE.fullmatch(env.get(m.group("var"), "")))


def secret_problems(compose: dict) -> list[str]:
    """Password-like values with a default or a literal instead of a required ${VAR:?msg} reference."""
    problems = []
    # every environment entry whose name looks secret must be exactly a required reference
    for name, svc in (compose.get("services") or {}).items():
        env = _env(svc)
        for key, value in env.items():
            if (SECRET_NAME_RE.search(key) or key in REQUIRED_KEYS) and not REQUIRED_REF_RE.fullmatch(value):
                problems.append(f"{name}: {key}={value!r} must be ${{VAR:?message}} (no default, no literal)")
    # anywhere in the file: a secret-named compose variable must be required, and no literal credential inline
    for path, text in _walk_strings(compose, ""):
        for m in INTERPOLATION_RE.finditer(text):
            var = m.group("braced") or m.group("named")
            if var and SECRET_NAME_RE.search(var) and m.group("op") not in (":?", "?"):
                problems.append(f"{path}: {m.group(0)!r} gives {var} a default or lets it be empty")
        service = path.split(".")[2] if path.startswith(".services.") else None
        service_env = _env(compose["services"][service]) if service else None
        for pattern in INLINE_SECRET_RES:
            for m in pattern.finditer(text):
                value = m.group("value").strip("\"'")
                if not (REQUIRED_REF_RE.fullmatch(value) or _is_container_ref_to_required(value, service_env)):
                    problems.append(f"{path}: literal or defaulted credential {m.group(0)!r}")
    return problems


def _grafana_refs(value: str) -> list[str]:
    """The variables a Grafana provisioning value expands ($VAR or ${VAR}), or [] if it is a literal."""
    m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", value)
    return [m.group(1) or m.group(2)] if m else []


def grafana_provisioning_problems(files: Mapping[str, Any], grafana_env: Mapping[str, str]) -> list[str]:
    """Secrets in Grafana provisioning files must be ${VAR} expanded from a required variable of the service."""
    problems = []
    for fname, cfg in files.items():
        for path, text in _walk_strings(cfg, fname):
            leaf = path.rsplit(".", 1)[-1]
            if ".secureJsonData." not in path and not SECRET_NAME_RE.search(leaf):
                continue
            refs = _grafana_refs(text)
            if not refs:
                problems.append(f"{path}: {text!r} is a literal secret, use ${{VAR}} from the grafana service")
            for var in refs:
                if not REQUIRED_REF_RE.fullmatch(grafana_env.get(var, "")):
                    problems.append(f"{path}: {var} is not set on the grafana service as ${{VAR:?message}}")
    return problems


def _grafana_files() -> dict[str, Any]:
    files = {}
    for path in sorted(GRAFANA_PROVISIONING.rglob("*")):
        if path.suffix in (".yml", ".yaml"):
            files[str(path.relative_to(ROOT))] = yaml.safe_load(path.read_text())
    return files


# --- the read-only ClickHouse user of Grafana (issue 12, item 5) ---------------------------------------

READER_USERS_FILE = CLICKHOUSE_USERS_D / "grafana.xml"
READER_MOUNT_TARGET = "/etc/clickhouse-server/users.d/grafana.xml"
# password elements ClickHouse accepts in users.xml: each must be empty and take its value from_env
PASSWORD_TAGS = ("password", "password_sha256_hex", "password_double_sha1_hex", "password_bcrypt_hash")


@dataclass(frozen=True)
class ReaderUser:
    name: str
    password_env: str
    profile: str
    readonly: str


def clickhouse_users_problems(root: ET.Element, server_env: Mapping[str, str]) -> list[str]:
    """Users in a users.d file: a password only from a required variable of the clickhouse service, and a
    profile with readonly=1 (the file holds read-only users only)."""
    problems = []
    profiles = {p.tag: p for p in root.findall("./profiles/*")}
    users = root.findall("./users/*")
    if not users:
        problems.append("no user defined")
    for user in users:
        secrets = [el for el in user if el.tag in PASSWORD_TAGS]
        if len(secrets) != 1:
            problems.append(f"{user.tag}: needs exactly one password element, has {[el.tag for el in secrets]}")
        for el in secrets:
            var = el.get("from_env")
            if (el.text or "").strip() or not var:
                problems.append(f"{user.tag}: <{el.tag}> is a literal, use from_env=\"VAR\"")
            elif not REQUIRED_REF_RE.fullmatch(server_env.get(var, "")):
                problems.append(f"{user.tag}: {var} is not set on the clickhouse service as ${{VAR:?message}}")
        profile = profiles.get(user.findtext("profile", default=""))
        readonly = profile.findtext("readonly", default="") if profile is not None else ""
        if readonly.strip() != "1":
            problems.append(f"{user.tag}: its profile must set <readonly>1</readonly>, has {readonly!r}")
        if (user.findtext("access_management", default="0") or "0").strip() != "0":
            problems.append(f"{user.tag}: access_management must stay off")
    return problems


def reader_user(path: Path = READER_USERS_FILE) -> ReaderUser:
    root = ET.parse(path).getroot()
    (user,) = root.findall("./users/*")
    profile_name = user.findtext("profile", default="")
    profile = root.find(f"./profiles/{profile_name}")
    assert profile is not None, f"profile {profile_name} missing"
    password = user.find("password")
    assert password is not None
    return ReaderUser(user.tag, password.get("from_env", ""), profile_name, profile.findtext("readonly", default=""))


def _mounts(service: dict) -> dict[str, tuple[str, str]]:
    """Bind mounts of a service: container path -> (host path, mode)."""
    out = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out[vol["target"]] = (vol.get("source", ""), "ro" if vol.get("read_only") else "rw")
        else:
            parts = vol.split(":")
            out[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "rw")
    return out


def _expanded_clickhouse_datasource(grafana_env: Mapping[str, str]) -> dict:
    """The ClickHouse data source after Grafana expands ${VAR} from its container environment."""
    ds_text = (GRAFANA_PROVISIONING / "datasources/clickhouse.yml").read_text()
    ds_text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: grafana_env[m.group(1) or m.group(2)], ds_text)
    return {d["type"]: d for d in yaml.safe_load(ds_text)["datasources"]}["grafana-clickhouse-datasource"]


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(COMPOSE) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def resolved(compose) -> dict[str, dict]:
    """The services after compose's interpolation with SAMPLE_ENV (what `docker compose config` would show)."""
    return interpolate(compose, SAMPLE_ENV)["services"]


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
    for name in ("kafka", "clickhouse", "processor", "sink", "prometheus", "grafana"):
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


def test_port_mappings_are_well_formed(resolved):
    host_ports: dict[str, str] = {}
    for name, svc in resolved.items():
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
    for name in ("processor", "sink", "migrate"):
        env = _env(services[name])
        unknown = {k for k in env if k.startswith("INCENTIVES_") and k not in known}
        assert not unknown, f"{name}: variables processor.config does not read: {unknown}"
        assert env["INCENTIVES_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["INCENTIVES_CLICKHOUSE_HOST"] == "clickhouse"
    command = services["processor"]["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[:5] == ["faust", "-A", "processor.stream.app", "worker", "-l"]
    assert "6066" in command and "0.0.0.0" in command


def test_the_sink_runs_as_its_own_service(services):
    """`incentives sink` beside the worker, which leaves the sink to it (issue 14, item 4); same image
    and settings, one more published metrics port."""
    from processor.config import load_settings

    worker, sink = services["processor"], services["sink"]
    assert load_settings({k: str(v) for k, v in _env(worker).items()}).sink_in_worker is False
    assert "INCENTIVES_SINK_IN_WORKER" not in _env(sink)
    assert sink["image"] == worker["image"] and sink.get("build") == worker.get("build")
    assert {k: v for k, v in _env(sink).items() if k != "INCENTIVES_SINK_PORT"} == {
        k: v for k, v in _env(worker).items() if k != "INCENTIVES_SINK_IN_WORKER"}
    command = sink["command"] if isinstance(sink["command"], list) else sink["command"].split()
    assert command[:2] == ["incentives", "sink"]
    port = _env(sink)["INCENTIVES_SINK_PORT"]
    assert command[command.index("--port") + 1] == port and command[command.index("--host") + 1] == "0.0.0.0"
    assert any(p.endswith(f":{port}:{port}") for p in sink["ports"])
    assert port in " ".join(sink["healthcheck"]["test"])
    assert set(_depends(sink)) >= {"kafka", "kafka-topics", "clickhouse", "migrate"}


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


# --- closed by default (issue 9, item 5) -------------------------------------------------------------


def test_published_ports_bind_to_loopback_by_default(compose, resolved):
    assert port_problems(compose) == []
    published = [p for svc in resolved.values() for p in svc.get("ports") or []]
    assert len(published) >= 7  # kafka, clickhouse x2, processor, sink, prometheus, grafana
    assert all(p.startswith("127.0.0.1:") for p in published), published
    opened = interpolate(compose, {**SAMPLE_ENV, BIND_VAR: "0.0.0.0"})["services"]
    assert all(p.startswith("0.0.0.0:") for svc in opened.values() for p in svc.get("ports") or [])


def test_no_password_has_a_default_or_a_literal(compose):
    assert secret_problems(compose) == []


def test_compose_refuses_to_start_without_each_secret(compose):
    interpolate(compose, SAMPLE_ENV)  # complete: no error
    required = {m.group("var") for _, text in _walk_strings(compose, "") for m in REQUIRED_REF_RE.finditer(text)}
    assert required == REQUIRED_VARS
    for var in sorted(REQUIRED_VARS):
        for env in ({k: v for k, v in SAMPLE_ENV.items() if k != var}, {**SAMPLE_ENV, var: ""}):
            with pytest.raises(MissingVariable) as err:
                interpolate(compose, env)
            assert err.value.var == var


def test_credentials_are_the_same_everywhere(resolved):
    ch = _env(resolved["clickhouse"])
    assert ch["CLICKHOUSE_PASSWORD"] == SAMPLE_ENV["CLICKHOUSE_PASSWORD"]
    assert ch["CLICKHOUSE_USER"]
    for name in ("processor", "sink", "migrate"):
        env = _env(resolved[name])
        assert env["INCENTIVES_CLICKHOUSE_USER"] == ch["CLICKHOUSE_USER"], name
        assert env["INCENTIVES_CLICKHOUSE_PASSWORD"] == ch["CLICKHOUSE_PASSWORD"], name
    gf = _env(resolved["grafana"])
    assert gf["GF_SECURITY_ADMIN_USER"] == SAMPLE_ENV["GRAFANA_ADMIN_USER"]
    assert gf["GF_SECURITY_ADMIN_PASSWORD"] == SAMPLE_ENV["GRAFANA_ADMIN_PASSWORD"]
    # the ClickHouse data source, expanded by Grafana from its container environment, logs in as the server's
    # read-only user, with the password the server reads from its own environment for that user
    ch_ds = _expanded_clickhouse_datasource(gf)
    reader = reader_user()
    assert ch_ds["jsonData"]["username"] == reader.name != ch["CLICKHOUSE_USER"]
    assert ch_ds["secureJsonData"]["password"] == ch[reader.password_env] == SAMPLE_ENV["CLICKHOUSE_READER_PASSWORD"]
    assert ch_ds["secureJsonData"]["password"] != ch["CLICKHOUSE_PASSWORD"]
    # the ClickHouse healthcheck reads the container's own (required) credentials
    assert "$CLICKHOUSE_PASSWORD" in " ".join(resolved["clickhouse"]["healthcheck"]["test"])


def test_grafana_provisioning_has_no_literal_secret(services):
    files = _grafana_files()
    assert any("datasources" in f for f in files)
    assert grafana_provisioning_problems(files, _env(services["grafana"])) == []


def test_no_well_known_default_credentials_anywhere():
    paths = [ROOT / "docker-compose.yml", ROOT / "Dockerfile"]
    paths += [p for d in ("deploy/grafana", "deploy/prometheus", "deploy/clickhouse/compose-users.d")
              for p in (ROOT / d).rglob("*") if p.is_file()]
    for path in paths:
        text = path.read_text()
        for stale in ("admin/admin", "incentives/incentives", "${GRAFANA_ADMIN_PASSWORD:-", "${CLICKHOUSE_PASSWORD:-",
                      "${CLICKHOUSE_READER_PASSWORD:-", "reader/reader", "<password>reader</password>"):
            assert stale not in text, f"{path.relative_to(ROOT)}: {stale}"
    assert not re.search(r"(?i)(password|secret|token)\w*[ =]", (ROOT / "Dockerfile").read_text()), "secret in image"


def test_clickhouse_has_a_read_only_user_for_grafana(services):
    ch = services["clickhouse"]
    env = _env(ch)
    # mounted as one file, so the image's entrypoint can still write its own users.d/default-user.xml
    source, mode = _mounts(ch)[READER_MOUNT_TARGET]
    assert (ROOT / source).resolve() == READER_USERS_FILE and mode == "ro"
    root = ET.parse(READER_USERS_FILE).getroot()
    assert root.tag == "clickhouse"
    assert clickhouse_users_problems(root, env) == []
    reader = reader_user()
    assert reader.readonly == "1" and reader.name != _env(ch)["CLICKHOUSE_USER"]
    assert reader.password_env == "CLICKHOUSE_READER_PASSWORD"
    assert REQUIRED_REF_RE.fullmatch(env[reader.password_env])
    user = root.find(f"./users/{reader.name}")
    assert user is not None
    assert [db.text for db in user.findall("./allow_databases/database")] == [env["CLICKHOUSE_DB"]]
    assert user.findall("./networks/ip"), "a user without <networks> cannot log in"
    # the plugin (clickhouse-go) sets max_execution_time on every query: readonly=1 must still allow that one
    constraint = root.find(f"./profiles/{reader.profile}/constraints/max_execution_time")
    assert constraint is not None and constraint.find("changeable_in_readonly") is not None
    ds = _expanded_clickhouse_datasource({"CLICKHOUSE_READER_PASSWORD": "x"})
    assert int(ds["jsonData"]["queryTimeout"]) + 10 <= int(constraint.findtext("max", default="0"))


def test_grafana_gets_only_the_read_only_credentials(services):
    gf = _env(services["grafana"])
    assert "CLICKHOUSE_PASSWORD" not in gf and "CLICKHOUSE_USER" not in gf, "grafana needs no read-write credentials"
    ch_ds = _expanded_clickhouse_datasource(gf)
    assert ch_ds["jsonData"]["username"] == reader_user().name
    assert ch_ds["uid"] == "clickhouse"
    ds_vars = set(re.findall(r"\$\{(\w+)\}", (GRAFANA_PROVISIONING / "datasources/clickhouse.yml").read_text()))
    assert ds_vars == {"CLICKHOUSE_READER_PASSWORD"}


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda root: _reader_password(root).set("from_env", ""), id="no-from-env"),
        pytest.param(lambda root: setattr(_reader_password(root), "text", "reader"), id="literal-and-from-env"),
        pytest.param(lambda root: _replace_password(root, "password", "hunter2"), id="literal-password"),
        pytest.param(lambda root: _replace_password(root, "password_sha256_hex", "ab" * 32), id="literal-sha256"),
        pytest.param(lambda root: _reader_password(root).set("from_env", "GRAFANA_DS_PASSWORD"),
                     id="variable-not-on-clickhouse"),
        pytest.param(lambda root: _readonly(root, "0"), id="readonly-0"),
        pytest.param(lambda root: _readonly(root, "2"), id="readonly-2-settings-changeable"),
        pytest.param(lambda root: _readonly(root, None), id="no-readonly"),
        pytest.param(lambda root: setattr(root.find("./users/*/access_management"), "text", "1"),
                     id="access-management"),
    ],
)
def test_clickhouse_users_checker_reports_unsafe_users(services, mutate):
    root = copy.deepcopy(ET.parse(READER_USERS_FILE).getroot())
    mutate(root)
    assert clickhouse_users_problems(root, _env(services["clickhouse"])), "the checker missed an unsafe user"


def _reader_password(root: ET.Element) -> ET.Element:
    password = root.find("./users/*/password")
    assert password is not None
    return password


def _replace_password(root: ET.Element, tag: str, value: str) -> None:
    user = root.find("./users/*")
    assert user is not None
    user.remove(_reader_password(root))
    ET.SubElement(user, tag).text = value


def _readonly(root: ET.Element, value: str | None) -> None:
    for profile in root.findall("./profiles/*"):
        readonly = profile.find("readonly")
        if readonly is not None:
            if value is None:
                profile.remove(readonly)
            else:
                readonly.text = value


def test_grafana_provisions_the_dashboards_from_the_mount(services):
    cfg = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards/dashboards.yml").read_text())
    assert cfg["apiVersion"] == 1
    (provider,) = cfg["providers"]
    assert provider["type"] == "file"
    mounts = _mounts(services["grafana"])
    source, mode = mounts[provider["options"]["path"]]
    assert (ROOT / source).resolve() == GRAFANA_DASHBOARDS and mode == "ro"
    assert mounts["/etc/grafana/provisioning"][0] == "./deploy/grafana/provisioning"
    assert {p.name for p in GRAFANA_DASHBOARDS.glob("*.json")} >= {
        "program-overview.json", "partner-drilldown.json", "fraud.json"}


def _set(service: str, key: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        doc["services"][service][key] = value

    return mutate


def _set_env(service: str, key: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        env = doc["services"][service].setdefault("environment", {})
        if isinstance(env, list):
            env.append(f"{key}={value}")
        else:
            env[key] = value

    return mutate


def _set_healthcheck(service: str, command: str) -> Callable[[dict], None]:
    return _set(service, "healthcheck", {"test": ["CMD-SHELL", command]})


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set("kafka", "ports", ["9094:9094"]), id="no-host-address"),
        pytest.param(_set("kafka", "ports", ["0.0.0.0:9094:9094"]), id="all-interfaces"),
        pytest.param(_set("kafka", "ports", ["127.0.0.1:9094:9094"]), id="literal-loopback-not-the-variable"),
        pytest.param(_set("kafka", "ports", ["${INCENTIVES_BIND_ADDRESS:-0.0.0.0}:9094:9094"]), id="open-default"),
        pytest.param(_set("kafka", "ports", ["${INCENTIVES_BIND_ADDRESS}:9094:9094"]), id="no-default"),
        pytest.param(_set("processor", "ports", ["6066"]), id="container-port-only"),
        pytest.param(_set("processor", "ports", [6066]), id="bare-int"),
        pytest.param(_set("grafana", "ports", [{"target": 3000, "published": 3000}]), id="long-form-no-host-ip"),
        pytest.param(_set("grafana", "ports", [{"target": 3000, "published": 3000, "host_ip": "0.0.0.0"}]),
                     id="long-form-open"),
        pytest.param(_set("grafana", "network_mode", "host"), id="network-mode-host"),
    ],
)
def test_port_checker_reports_open_ports(compose, mutate):
    doc = copy.deepcopy(compose)
    mutate(doc)
    assert port_problems(doc), "the checker missed an open port"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set_env("clickhouse", "CLICKHOUSE_PASSWORD", "${CLICKHOUSE_PASSWORD:-incentives}"),
                     id="colon-dash-default"),
        pytest.param(_set_env("clickhouse", "CLICKHOUSE_PASSWORD", "${CLICKHOUSE_PASSWORD-incentives}"),
                     id="dash-default"),
        pytest.param(_set_env("clickhouse", "CLICKHOUSE_PASSWORD", "${CLICKHOUSE_PASSWORD}"), id="may-be-empty"),
        pytest.param(_set_env("clickhouse", "CLICKHOUSE_PASSWORD", "incentives"), id="literal"),
        pytest.param(_set_env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "admin"), id="grafana-literal"),
        pytest.param(_set_env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD:-admin}"),
                     id="grafana-default"),
        pytest.param(_set_env("grafana", "GF_SECURITY_ADMIN_USER", "admin"), id="grafana-admin-user-literal"),
        pytest.param(_set("processor", "environment", ["INCENTIVES_CLICKHOUSE_PASSWORD=incentives"]),
                     id="list-form-literal"),
        pytest.param(_set("processor", "environment", ["INCENTIVES_CLICKHOUSE_PASSWORD"]), id="list-form-passthrough"),
        pytest.param(_set_env("processor", "PARTNER_API_TOKEN", "abc123"), id="token"),
        pytest.param(_set_env("processor", "SIGNING_SECRET", 12345), id="numeric-secret"),
        pytest.param(_set_env("processor", "INCENTIVES_CLICKHOUSE_HOST", "${CLICKHOUSE_PASSWORD:-x}"),
                     id="secret-var-default-under-other-key"),
        pytest.param(_set_healthcheck("clickhouse", "clickhouse-client --password incentives -q 'SELECT 1'"),
                     id="healthcheck-literal"),
        pytest.param(_set_healthcheck("clickhouse", "clickhouse-client --password=\"$$CH_PW\" -q 'SELECT 1'"),
                     id="healthcheck-unset-container-var"),
        pytest.param(_set("migrate", "command", ["sh", "-c", "curl http://incentives:hunter2@clickhouse:8123/"]),
                     id="url-credentials"),
        pytest.param(_set("kafka-topics", "command", ["GF_SECURITY_ADMIN_PASSWORD=admin run"]), id="inline-assignment"),
    ],
)
def test_secret_checker_reports_defaults_and_literals(compose, mutate):
    doc = copy.deepcopy(compose)
    mutate(doc)
    assert secret_problems(doc), "the checker missed a defaulted or literal secret"


DS = "deploy/grafana/provisioning/datasources/clickhouse.yml"


def _ds_password(value: str) -> dict:
    cfg = yaml.safe_load((ROOT / DS).read_text())
    for ds in cfg["datasources"]:
        if ds["type"] == "grafana-clickhouse-datasource":
            ds["secureJsonData"]["password"] = value
    return cfg


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda files, env: files[DS].update(_ds_password("incentives")), id="literal-password"),
        pytest.param(lambda files, env: files[DS].update(_ds_password("${GRAFANA_DS_PASSWORD}")),
                     id="variable-not-on-service"),
        pytest.param(lambda files, env: env.update(
            CLICKHOUSE_READER_PASSWORD="${CLICKHOUSE_READER_PASSWORD:-reader}"), id="service-variable-has-default"),
        pytest.param(lambda files, env: files[DS].update(_ds_password("${CLICKHOUSE_PASSWORD}")),
                     id="read-write-password-not-on-service"),
        pytest.param(lambda files, env: files[DS]["datasources"][1].update(basicAuthPassword="admin"),
                     id="basic-auth-literal"),
        pytest.param(lambda files, env: files.update({"x/dashboards.yml": {"apiKey": "eyJrIjoi"}}), id="api-key-file"),
    ],
)
def test_grafana_checker_reports_literal_secrets(services, mutate):
    files = copy.deepcopy(_grafana_files())
    env = dict(_env(services["grafana"]))
    mutate(files, env)
    assert grafana_provisioning_problems(files, env), "the checker missed a literal Grafana secret"

