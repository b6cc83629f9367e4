"""processor.config: defaults, overrides, errors, round trip through the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from processor.config import REPO_ROOT, ConfigError, load_settings, writer_schema_dirs


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
    ("INCENTIVES_BATCH_LINGER_MS", "-5"),
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


def test_worker_dir_sink_settings_defaults(tmp_path):
    s = load_settings({}, cwd=tmp_path)
    assert s.worker_dir == s.home / "worker"
    assert s.sink_in_worker is True
    assert s.sink_port == 6065
    assert s.sink_port not in (s.web_port, s.web_port + 1)      # worker 2 of `dev up --workers 2`


def test_worker_dir_relative_to_cwd_and_moved_with_home(tmp_path):
    s = load_settings({"INCENTIVES_WORKER_DIR": "w1"}, cwd=tmp_path)
    assert s.worker_dir == (tmp_path / "w1").resolve()
    assert s.replace(home=tmp_path / "other").worker_dir == s.worker_dir        # set explicitly: kept
    default = load_settings({"INCENTIVES_HOME": str(tmp_path / "h")})
    moved = default.replace(home=tmp_path / "h2")
    assert moved.worker_dir == tmp_path / "h2" / "worker"
    assert default.replace(home=tmp_path / "h2", worker_dir=tmp_path / "x").worker_dir == tmp_path / "x"


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), ("Yes", True), ("on", True),
                                          ("0", False), ("false", False), ("NO", False), ("off", False),
                                          ("", True)])
def test_sink_in_worker_is_a_boolean(raw, expected):
    assert load_settings({"INCENTIVES_SINK_IN_WORKER": raw}).sink_in_worker is expected


@pytest.mark.parametrize("name,value", [("INCENTIVES_SINK_IN_WORKER", "maybe"), ("INCENTIVES_SINK_PORT", "70000")])
def test_bad_sink_settings_are_reported(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_booleans_round_trip_as_1_and_0(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_SINK_IN_WORKER": "false",
                       "INCENTIVES_WORKER_DIR": str(tmp_path / "w")})
    env = s.as_env()
    assert env["INCENTIVES_SINK_IN_WORKER"] == "0"
    assert env["INCENTIVES_WORKER_DIR"] == str(tmp_path / "w")
    assert load_settings(env) == s
    assert load_settings(s.replace(sink_in_worker=True).as_env()).sink_in_worker is True


def test_writer_schemas_are_a_path_list_from_the_repository_root(tmp_path):
    assert load_settings({}).writer_schemas == ()
    raw = os.pathsep.join(["processor/chaos/schemas", "", str(tmp_path), "processor/chaos/schemas"])
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WRITER_SCHEMAS": raw})
    assert s.writer_schemas == (REPO_ROOT / "processor" / "chaos" / "schemas", tmp_path.resolve())
    assert writer_schema_dirs({"INCENTIVES_WRITER_SCHEMAS": raw}) == s.writer_schemas
    assert s.as_env()["INCENTIVES_WRITER_SCHEMAS"] == os.pathsep.join(str(p) for p in s.writer_schemas)
    assert load_settings(s.as_env()) == s
    assert load_settings(load_settings({}).as_env()).writer_schemas == ()
