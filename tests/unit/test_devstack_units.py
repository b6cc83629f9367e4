"""processor.devstack without services: port conflicts, pid files, ClickHouse config, worker and sink
commands, the workers of a group."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest

from processor.config import load_settings
from processor.devstack import clickhouse, proc, sink, stack, worker
from processor.devstack.ports import PortInUseError, PortWanted, check_ports_free, find_conflicts


def test_find_conflicts_is_pure():
    wanted = [PortWanted("broker", "127.0.0.1", 9092, "INCENTIVES_KAFKA_PORT"),
              PortWanted("clickhouse http", "127.0.0.1", 8123, "INCENTIVES_CLICKHOUSE_HTTP_PORT")]
    taken = {9092}
    assert find_conflicts(wanted, lambda _h, p: p in taken) == wanted[:1]
    assert find_conflicts(wanted, lambda _h, _p: False) == []


def test_check_ports_free_names_port_and_setting():
    wanted = [PortWanted("broker", "127.0.0.1", 9092, "INCENTIVES_KAFKA_PORT")]
    with pytest.raises(PortInUseError) as e:
        check_ports_free(wanted, lambda _h, _p: True)
    assert "127.0.0.1:9092" in str(e.value) and "INCENTIVES_KAFKA_PORT" in str(e.value)
    check_ports_free(wanted, lambda _h, _p: False)


def test_clickhouse_config_renders(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_CLICKHOUSE_PORT": "29000",
                       "INCENTIVES_CLICKHOUSE_HTTP_PORT": "28123"})
    files = clickhouse.render_config(s)
    config = ET.fromstring(files["config.xml"])
    assert config.tag == "yandex"
    assert config.findtext("tcp_port") == "29000" and config.findtext("http_port") == "28123"
    assert config.findtext("listen_host") == "127.0.0.1"
    for tag in ("path", "tmp_path", "user_files_path", "format_schema_path"):
        assert config.findtext(tag).startswith(str(tmp_path / "clickhouse") + "/"), tag
    users = ET.fromstring(files["users.xml"])
    assert users.find("profiles/default/allow_experimental_low_cardinality_type").text == "1"
    assert users.find("users/reader/profile").text == "readonly"


def test_worker_command_and_env(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WEB_PORT": "26066"})
    argv = worker.argv(s)
    assert argv[:6] == [sys.executable, "-m", "faust", "-A", "processor.stream.app", "worker"]
    assert argv[argv.index("-l") + 1] in ("crit", "error", "warn", "info", "debug")
    assert argv[argv.index("--web-port") + 1] == "26066"
    assert argv[argv.index("--web-bind") + 1] == "127.0.0.1"
    assert worker.MARKER in " ".join(argv)
    env = worker.environment(s)
    assert load_settings(env).home == s.home
    assert env["INCENTIVES_WEB_PORT"] == "26066"


def test_pid_file_lifecycle(tmp_path):
    pid_file = tmp_path / "x.pid"
    assert proc.running_pid(pid_file, "sleep") is None
    p = proc.spawn([sys.executable, "-c", "import time; time.sleep(60)", "marker-xyz"],
                   log_file=tmp_path / "x.log", pid_file=pid_file)
    try:
        assert proc.read_pid(pid_file) == p.pid
        assert proc.running_pid(pid_file, "marker-xyz") == p.pid
        # a live process whose command line does not match is not ours: pid file dropped
        assert proc.running_pid(pid_file, "not-this-one") is None
        assert not pid_file.exists()
        pid_file.write_text(f"{p.pid}\n")
        assert proc.stop_pid_file(pid_file, "marker-xyz", timeout=5) == "stopped"
        assert not pid_file.exists()
        assert not proc.pid_alive(p.pid)
    finally:
        if p.poll() is None:
            p.kill()


def test_stop_escalates_to_sigkill(tmp_path):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"up\n"
        assert proc.stop_pid(p.pid, timeout=0.5) == "killed"
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_stale_pid_file_is_removed(tmp_path):
    pid_file = tmp_path / "dead.pid"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    pid_file.write_text(str(p.pid))
    assert proc.running_pid(pid_file, "python") is None
    assert not pid_file.exists()
    pid_file.write_text("garbage")
    assert proc.running_pid(pid_file, "python") is None
    assert not pid_file.exists()


def test_wait_until_reports_log_tail_when_process_dies(tmp_path):
    log = tmp_path / "w.log"
    p = proc.spawn([sys.executable, "-c", "import sys; print('boom: no app'); sys.exit(3)"],
                   log_file=log, pid_file=tmp_path / "w.pid")
    with pytest.raises(proc.StartError, match="(?s)exited with code 3.*boom: no app"):
        proc.wait_until(lambda: False, timeout=30, what="thing", proc=p, log_file=log)
    assert os.path.exists(log)


def test_archive_names_carry_the_utc_time_to_the_second(tmp_path):
    now = datetime(2026, 12, 1, 23, 49, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    stamp = stack.archive_stamp(now)
    assert stamp == "20261201T224900Z"
    assert stack.archive_stamp(datetime(2026, 12, 1, 22, 49, tzinfo=UTC)) == stamp
    with pytest.raises(ValueError):
        stack.archive_stamp(datetime(2026, 12, 1, 22, 49))
    assert stack.archive_database_name("incentives", stamp) == "incentives_archive_20261201T224900Z"
    taken = {"incentives_archive_20261201T224900Z", "incentives_archive_20261201T224900Z_2"}
    assert stack.archive_database_name("incentives", stamp, taken.__contains__) == (
        "incentives_archive_20261201T224900Z_3")

    s = load_settings({"INCENTIVES_HOME": str(tmp_path)})
    first = stack.worker_archive_dir(s, stamp)
    assert first == tmp_path / "archive" / "worker-20261201T224900Z"
    first.mkdir(parents=True)
    assert stack.worker_archive_dir(s, stamp) == tmp_path / "archive" / "worker-20261201T224900Z-2"
    assert stack.archive_root(s) == tmp_path / "archive"


def test_sink_command_and_env(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_SINK_PORT": "26065"})
    argv = sink.argv(s)
    assert argv[:4] == [sys.executable, "-m", "processor.cli.main", "sink"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "26065"
    assert sink.MARKER in " ".join(argv)
    assert load_settings(sink.environment(s)) == s
    assert sink.pid_file(s) == tmp_path / "sink" / "sink.pid" and sink.log_file(s) == tmp_path / "sink" / "sink.log"
    assert sink.metrics_url(s) == "http://127.0.0.1:26065/metrics"
    assert [(p.port, p.env_var) for p in sink.wanted_ports(s)] == [(26065, "INCENTIVES_SINK_PORT")]


def test_worker_i_has_its_own_port_and_directory(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WEB_PORT": "26066",
                       "INCENTIVES_SINK_IN_WORKER": "0"})
    assert worker.instance_settings(s, 1) == s
    assert worker.directory(s) == tmp_path / "worker" and worker.pid_file(s) == tmp_path / "worker" / "worker.pid"
    third = worker.instance_settings(s, 3)
    assert third.web_port == 26068 and third.worker_dir == tmp_path / "worker-3"
    assert worker.pid_file(third) == tmp_path / "worker-3" / "worker.pid"
    assert worker.log_file(third) == tmp_path / "worker-3" / "worker.log"
    assert (third.app_id, third.partitions, third.sink_in_worker) == (s.app_id, s.partitions, False)  # one group
    env = worker.environment(third)
    assert env["INCENTIVES_WEB_PORT"] == "26068" and env["INCENTIVES_SINK_IN_WORKER"] == "0"
    assert load_settings(env).worker_dir == tmp_path / "worker-3"
    assert worker.argv(third)[worker.argv(third).index("--web-port") + 1] == "26068"
    assert [worker.instance_name(i) for i in (1, 2)] == ["worker", "worker-2"]
    with pytest.raises(ValueError):
        worker.instance_settings(s, 0)


def test_workers_are_found_again_by_their_directories_and_pid_files(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path)})
    assert worker.instance_indexes(s) == [1]
    for name in ("worker-2", "worker-10", "worker-x", "worker-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "worker-3").write_text("a file, not a worker")
    (tmp_path / "worker-10" / "worker.pid").write_text("12345\n")
    assert worker.instance_indexes(s) == [1, 2, 10]
    assert worker.instance_indexes(s, with_pid_file=True) == [1, 10]
    assert [name for name, _ in worker.instances(s)] == ["worker", "worker-10"]
    assert [name for name, _ in worker.instances(s, 2)] == ["worker", "worker-2"]
    units = stack.units(s)
    assert [u.name for u in units] == ["broker", "clickhouse", "sink", "worker", "worker-10", "console"]
    w10 = units[4]
    assert w10.settings.web_port == s.web_port + 9
    assert [(p.component, p.port) for p in w10.wanted_ports()] == [("worker-10", s.web_port + 9)]
    assert "INCENTIVES_WEB_PORT" in w10.wanted_ports()[0].env_var


def test_up_refuses_ports_wanted_twice_before_starting_anything(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path / "home"), "INCENTIVES_WEB_PORT": "26066",
                       "INCENTIVES_SINK_PORT": "26067", "INCENTIVES_KAFKA_PORT": "29999"})
    with pytest.raises(stack.StackError, match="26067.*sink.*worker-2"):
        stack.up(s, workers=2, echo=lambda _line: None)
    assert not (tmp_path / "home" / "broker").exists()
    with pytest.raises(ValueError):
        stack.up(s, workers=0, echo=lambda _line: None)


def test_worker_archive_names(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path)})
    assert stack.worker_archive_dir(s, "20261201T224900Z", "worker-2") == (
        tmp_path / "archive" / "worker-2-20261201T224900Z")


def test_a_fresh_log_archives_the_state_of_every_worker(tmp_path):
    s = load_settings({"INCENTIVES_HOME": str(tmp_path)})
    for name in ("worker", "worker-2"):
        (tmp_path / name / "data" / "v1").mkdir(parents=True)
        (tmp_path / name / "data" / "v1" / "marker").write_text(name)
    (tmp_path / "worker-3").mkdir()                    # a worker that never wrote state
    lines: list[str] = []
    stack._archive_worker_state(s, "20261201T224900Z", lines.append)
    for name in ("worker", "worker-2"):
        assert not (tmp_path / name / "data").exists()
        assert (tmp_path / "archive" / f"{name}-20261201T224900Z" / "v1" / "marker").read_text() == name
    assert [line.split()[0] for line in lines] == ["worker", "worker-2"]
