"""processor.config: defaults, overrides, errors, round trip through the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.config import REPO_ROOT, ConfigError, load_settings


def test_defaults(tmp_path):
    s = load_settings({}, cwd=tmp_path)
    assert s.home == (tmp_path / ".incentives").resolve()
    assert s.kafka_port == 9092 and s.kafka_bootstrap == "127.0.0.1:9092"
    assert (s.clickhouse_host, s.clickhouse_port, s.clickhouse_http_port) == ("127.0.0.1", 9000, 8123)
    assert s.clickhouse_database == "incentives"
    assert (s.clickhouse_user, s.clickhouse_password) == ("default", "")
    assert (s.web_host, s.web_port) == ("127.0.0.1", 6066)
    assert s.partitions == 4
    assert s.program == REPO_ROOT / "deploy" / "programs" / "default.yaml"
    assert s.app_id == "incentives"
    assert s.batch_wait_ms == 1000
    assert s.kafka_broker_url == "kafka://127.0.0.1:9092"


def test_kafka_port_moves_the_default_bootstrap():
    s = load_settings({"INCENTIVES_KAFKA_PORT": "19092"})
    assert s.kafka_bootstrap == "127.0.0.1:19092"


def test_explicit_bootstrap_wins():
    s = load_settings({"INCENTIVES_KAFKA_PORT": "19092", "INCENTIVES_KAFKA_BOOTSTRAP": "k1:9092, k2:9092"})
    assert s.kafka_bootstrap_servers == ["k1:9092", "k2:9092"]
    assert s.kafka_broker_url == "kafka://k1:9092;k2:9092"


def test_relative_paths(tmp_path):
    env = {"INCENTIVES_HOME": "state", "INCENTIVES_PROGRAM": "deploy/programs/x.yaml"}
    s = load_settings(env, cwd=tmp_path)
    assert s.home == (tmp_path / "state").resolve()
    assert s.program == REPO_ROOT / "deploy" / "programs" / "x.yaml"
    absolute = load_settings({"INCENTIVES_PROGRAM": "/etc/p.yaml"})
    assert absolute.program == Path("/etc/p.yaml")


@pytest.mark.parametrize("name,value", [
    ("INCENTIVES_KAFKA_PORT", "abc"),
    ("INCENTIVES_CLICKHOUSE_PORT", "0"),
    ("INCENTIVES_WEB_PORT", "70000"),
    ("INCENTIVES_PARTITIONS", "-1"),
    ("INCENTIVES_BATCH_WAIT_MS", "0"),
])
def test_bad_values_are_reported(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_round_trip_through_env(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_KAFKA_PORT": "29092",
                       "INCENTIVES_CLICKHOUSE_PASSWORD": "secret"})
    assert load_settings(s.as_env()) == s


def test_replace_keeps_bootstrap_in_step():
    s = load_settings({})
    assert s.replace(kafka_port=1234).kafka_bootstrap == "127.0.0.1:1234"
    assert s.replace(kafka_port=1234, kafka_bootstrap="x:1").kafka_bootstrap == "x:1"
    with pytest.raises(AttributeError):
        s.kafka_port = 1  # frozen
