"""The worker is assembled in one place (issue 14, item 7): the agents' modules import without the
app module and change nothing in the process; `processor.stream.app` registers the agents, the web
pages and the resume hooks, and tunes the process, once."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import gc, json, sys
from faust.transport.producer import ProducerBuffer
from processor.stream import rewind
def state():
    return {"gc": list(gc.get_threshold()), "buffer": ProducerBuffer.max_messages,
            "resumable": sorted(r.topic for r in rewind._registered)}
before = state()
import processor.stream.stage1, processor.stream.stage2, processor.stream.sink, processor.stream.pages
agents = state()
assert "processor.stream.app" not in sys.modules
import processor.stream.app as assembled
after = state()
routes = [r.resource.canonical for r in assembled.app.web.web_app.router.routes()]
print(json.dumps({"before": before, "agents": agents, "after": after,
                  "agents_registered": sorted(a.split(".")[-1] for a in assembled.app.agents),
                  "pages": sorted(p for p in ("/metrics", "/ready", "/partners") if p in routes)}))
"""


def test_agents_import_without_effects_and_the_app_module_assembles_the_worker(tmp_path) -> None:
    env = {**os.environ, "INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WORKER_DIR": str(tmp_path / "w")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["agents"] == seen["before"]                       # importing the agents changed nothing
    assert seen["after"]["gc"] == [100_000, 50, 100] and seen["after"]["buffer"] == 100_000
    assert seen["after"]["resumable"] == ["partner-events", "partner-events-repartition"]
    assert {"stage1", "stage2"} <= set(seen["agents_registered"])
    assert seen["pages"] == ["/metrics", "/partners", "/ready"]
    assert (tmp_path / "w").is_dir()


WATCH = """
import json
import processor.stream.app as assembled
from processor.stream import watchdog
stopped = []
watchdog.crash_stop = lambda where: stopped.append(where)
ticks = []
for _ in range(2):
    watchdog.check()
ticks.append(list(stopped))
assembled.app._fetcher._crash(KeyError("partner-events-2"))
for _ in range(3):
    watchdog.check()
    ticks.append(list(stopped))
print(json.dumps(ticks))
"""


def test_a_crashed_fetcher_stops_the_worker_after_three_checks(tmp_path) -> None:
    """The watchdog (processor/stream/watchdog.py): nothing while every service runs; a fetcher that
    crashed and stays crashed stops the worker on the third check, naming the crash."""
    env = {**os.environ, "INCENTIVES_HOME": str(tmp_path), "INCENTIVES_WORKER_DIR": str(tmp_path / "w")}
    out = subprocess.run([sys.executable, "-c", WATCH], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    ticks = json.loads(out.stdout.strip().splitlines()[-1])
    assert ticks[0] == [] and ticks[1] == [] and ticks[2] == []
    assert len(ticks[3]) == 1 and "fetcher (KeyError('partner-events-2'))" in ticks[3][0]
