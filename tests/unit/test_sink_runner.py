"""The sink's runner without services: a clean stop commits only what was written, a write that
cannot finish is abandoned uncommitted, a log that went backwards halts it; `incentives sink`
stops on SIGTERM with exit 0."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from aiokafka import TopicPartition

from processor.config import REPO_ROOT, load_settings
from processor.stream import sink_runner
from processor.stream.sink_consumer import LogWentBackwards
from projections import sink as projection

TP = TopicPartition("points-ledger", 0)


class FakeBatch:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __len__(self) -> int:
        return 1

    def offsets(self) -> dict[TopicPartition, int]:
        return {TP: self.offset + 1}


class FakeReader:
    """Hands out one-record batches at offsets 0, 1, 2, ...; records commits and stops."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.next_offset = 0
        self.committed: list[int] = []
        self.started = self.stopped = False
        self.fail = fail

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def next_batch(self, timeout_ms: int = 500) -> FakeBatch:
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        batch = FakeBatch(self.next_offset)
        self.next_offset += 1
        return batch

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets[TP])


async def fake_project_batch(reader, batch, write):  # type: ignore[no-untyped-def]
    await asyncio.get_running_loop().run_in_executor(None, write, {"ledger": [{"offset": batch.offset}]})
    await reader.commit(batch.offsets())


@pytest.fixture
def settings(tmp_path):
    return load_settings({"INCENTIVES_HOME": str(tmp_path)})


def _run(settings, reader: FakeReader, write, stop_when, grace: float = 5.0, monkeypatch=None):  # type: ignore[no-untyped-def]
    async def main() -> None:
        stop = asyncio.Event()

        async def stopper() -> None:
            while not stop_when():
                await asyncio.sleep(0.005)
            stop.set()

        asyncio.create_task(stopper())
        await sink_runner.run_sink(settings, object(), stop, grace=grace)

    monkeypatch.setattr(sink_runner, "make_consumer", lambda _s, _c: reader)
    monkeypatch.setattr(sink_runner, "project_batch", fake_project_batch)
    monkeypatch.setattr(sink_runner, "SinkWriter", lambda _s, _p: write)
    asyncio.run(main())


class Writer:
    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.written: list[int] = []
        self.entered = threading.Event()
        self.stopped = threading.Event()
        self.closed = False

    def __call__(self, rows) -> None:  # type: ignore[no-untyped-def]
        self.entered.set()
        if self.stopped.wait(self.seconds):
            raise sink_runner.SinkStopped("stopping")
        self.written.append(rows["ledger"][0]["offset"])

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        self.closed = True


def test_stop_between_batches_commits_exactly_what_was_written(settings, monkeypatch):
    reader, write = FakeReader(), Writer()
    _run(settings, reader, write, lambda: len(write.written) >= 3, monkeypatch=monkeypatch)
    assert reader.started and reader.stopped and write.closed
    assert reader.committed == [o + 1 for o in write.written]
    assert len(write.written) >= 3


def test_stop_during_a_batch_finishes_and_commits_it(settings, monkeypatch):
    reader, write = FakeReader(), Writer(seconds=0.3)
    _run(settings, reader, write, write.entered.is_set, monkeypatch=monkeypatch)
    assert write.written == [0] and reader.committed == [1] and reader.stopped


def test_a_batch_that_cannot_be_written_in_time_is_left_uncommitted(settings, monkeypatch):
    reader, write = FakeReader(), Writer(seconds=60)
    started = time.monotonic()
    _run(settings, reader, write, write.entered.is_set, grace=0.3, monkeypatch=monkeypatch)
    assert time.monotonic() - started < 10
    assert write.written == [] and reader.committed == [] and reader.stopped
    assert write.stopped.is_set() and not write.closed


def test_a_log_that_went_backwards_halts_the_sink(settings, monkeypatch):
    reader = FakeReader(fail=LogWentBackwards(TP, "position 10 but the broker's high watermark is 2"))
    with pytest.raises(sink_runner.SinkHalted, match=r"points-ledger\[0\]"):
        _run(settings, reader, Writer(), lambda: False, monkeypatch=monkeypatch)
    assert reader.stopped and reader.committed == []


class FakeClickHouse:
    """Unreachable: each write retries with the sink's sleep, then gives up (SinkUnavailable)."""

    def __init__(self, settings, *, max_wait, sleep):  # type: ignore[no-untyped-def]
        self.sleep = sleep
        self.calls: list[str] = []

    def write_program_settings(self, version, point_value_cents) -> None:  # type: ignore[no-untyped-def]
        self.calls.append("program_settings")

    def write(self, table, rows, mapped=False) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(table)
        self.sleep(0.01)
        raise projection.SinkUnavailable("down")

    def rebuild_kpis(self, dirty) -> int:  # type: ignore[no-untyped-def]
        return 0


def test_the_writer_keeps_retrying_until_stopped(settings, monkeypatch):
    monkeypatch.setattr(projection, "ClickHouseSink", FakeClickHouse)

    class Program:
        version, point_value_cents = "v1", 1

    writer = sink_runner.SinkWriter(settings, Program())
    done: list[BaseException] = []

    def write() -> None:
        try:
            writer({"ledger": [{"entry_id": "x"}]})
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            done.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive() and not done            # still retrying: ClickHouse is down
    writer.stop()
    thread.join(5)
    assert not thread.is_alive() and isinstance(done[0], sink_runner.SinkStopped)
    assert writer._sink is not None and writer._sink.calls[0] == "program_settings"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_incentives_sink_serves_metrics_and_stops_cleanly_on_sigterm(tmp_path):
    """No broker at all: the sink keeps retrying (supervised), /metrics answers, SIGTERM exits 0."""
    port, nothing = _free_port(), _free_port()
    env = {**os.environ, "INCENTIVES_HOME": str(tmp_path), "INCENTIVES_KAFKA_PORT": str(nothing),
           "INCENTIVES_SINK_PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "processor.cli.main", "sink"], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
                    body = resp.read()
            except OSError:
                time.sleep(0.1)
        assert b"incentives_sink_stalls_total" in body
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    assert b"ClickHouse sink: stopped" in out


def test_a_halted_sink_exits_70(settings, monkeypatch, caplog):
    from processor.cli import sink as sink_cli

    async def halted(_settings, _program, _stop):  # type: ignore[no-untyped-def]
        raise sink_runner.SinkHalted("ClickHouse sink (partner-events[1]: the log went backwards)")

    monkeypatch.setattr(sink_runner, "run_sink", halted)
    with caplog.at_level("CRITICAL"):
        assert sink_cli.serve(settings, host="127.0.0.1", port=_free_port()) == sink_cli.EXIT_LOG_WENT_BACKWARDS == 70
    assert any(r.levelname == "CRITICAL" and "partner-events[1]" in r.getMessage() for r in caplog.records)
