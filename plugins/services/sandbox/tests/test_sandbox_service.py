"""The runtime service on Ray: leases, warm pool, limits, release when a task is written,
and nothing left behind after a run, a failed task or a crash."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import types
from pathlib import Path

import psutil
import pytest
import ray
from ray import cloudpickle

import matrix_core
from matrix_core import Agent, AgentSpec, ConfigDirSpec, MatrixError, Orchestrator, WorkflowSpec, hookimpl
from matrix_core.plugins import get_plugin_host
from matrix_core.sandbox import RuntimeClient
from matrix_core._private.tool_service import start_runtime
from matrix_core.testing import assert_exactly_once, read_records

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install -y bubblewrap)")
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def sandbox_processes(root: Path) -> list[psutil.Process]:
    """Live processes that belong to sandboxes under ``root`` (their command line names it)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and any(str(root) in a for a in p.info["cmdline"] or []):
            found.append(p)
    return found


def sandbox_dirs(root: Path) -> list[Path]:
    base = root / "matrix-sandbox"
    return [d for owner in base.iterdir() for d in owner.iterdir() if d.is_dir()] if base.exists() else []


def start(tmp_path, **cfg):
    spec = get_plugin_host().get("tool_runtime", "sandbox")
    return start_runtime(spec, {"temp_root": str(tmp_path), **cfg}, f"test-runtime-{os.urandom(4).hex()}")


def test_leases_pool_and_limits(matrix_ray, tmp_path):
    handle = start(tmp_path, max_sandboxes=2, max_concurrency=2, warm_pool=1, acquire_timeout_s=1)
    client = RuntimeClient(handle.actor)

    async def scenario():
        a = await client.acquire("task-a")
        assert (await client.acquire("task-a")).id == a.id  # the same task gets the same sandbox
        scratch = await client.acquire("task-a", name="scratch")
        assert scratch.id != a.id
        with pytest.raises(MatrixError, match="max_sandboxes=2"):
            await client.acquire("task-b")
        await scratch.release()
        b = await client.acquire("task-b")
        await a.write_file("note", "a's")
        assert (await b.exec("ls")).stdout == ""  # sandboxes share nothing
        # Two commands at once at most: four 1 s sleeps take two rounds.
        started = time.monotonic()
        results = await asyncio.gather(*(box.exec("sleep 1") for box in (a, b, a, b)))
        assert all(r.ok for r in results) and 1.9 < time.monotonic() - started < 6
        stats = await client.stats()
        assert stats["from_pool"] >= 1 and stats["leased"] == 2 and stats["execs"] == 5
        await client.release_task("task-a")
        with pytest.raises(MatrixError, match="not leased"):
            await a.exec("true")
        return await client.stats()

    stats = asyncio.run(scenario())
    assert stats["leased"] == 1
    final = handle.stop()
    assert (final["existing"], final["processes"], final["work_dirs"]) == (0, 0, 0)
    assert sandbox_dirs(tmp_path) == [] and sandbox_processes(tmp_path) == []


def test_bad_config_and_missing_bwrap_are_one_line(matrix_ray, tmp_path):
    with pytest.raises(MatrixError, match="apt-get install -y bubblewrap"):
        start(tmp_path, bwrap="no-such-bwrap")
    with pytest.raises(MatrixError, match="runtime.max_sandboxes must be >= 1"):
        start(tmp_path, max_sandboxes=0)


def test_a_crashed_runtime_leaves_nothing(matrix_ray, tmp_path):
    handle = start(tmp_path, warm_pool=2)
    client = RuntimeClient(handle.actor)

    async def begin():
        box = await client.acquire("t")
        await box.write_file("state", "x")
        pending = asyncio.ensure_future(box.exec("sleep 600 & sleep 600", timeout_s=300))
        await asyncio.sleep(1.5)
        return box, pending

    async def crash():
        box, pending = await begin()
        stats = await client.stats()
        assert stats["processes"] == 1 and len(sandbox_dirs(tmp_path)) == 3  # leased + 2 warm
        os.kill(stats["pid"], signal.SIGKILL)
        with pytest.raises(MatrixError, match="died"):
            await pending
        return stats["pid"]

    dead_pid = asyncio.run(crash())
    deadline = time.monotonic() + 20
    while sandbox_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(tmp_path) == []  # bwrap --die-with-parent took the sleepers along
    if os.geteuid() == 0:
        assert len(mounts_under(tmp_path)) == 3  # the dead runtime's size-limited work dirs, still mounted
    while True:  # Ray restarts it: the new process sweeps the dead one's dirs
        try:
            stats = ray.get(handle.actor.start.remote(), timeout=30)
            break
        except ray.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline + 60, "the runtime service was not restarted"
            time.sleep(0.5)
    assert stats["pid"] != dead_pid and stats["leased"] == 0
    owners = list((tmp_path / "matrix-sandbox").iterdir())
    assert len(owners) == 1 and str(stats["pid"]) in owners[0].name
    handle.stop()
    assert sandbox_dirs(tmp_path) == [] and sandbox_processes(tmp_path) == [] and mounts_under(tmp_path) == []


def mounts_under(path):
    return [line.split()[4] for line in open("/proc/self/mountinfo") if line.split()[4].startswith(f"{path}/")]


# --- a workflow through the real driver ---------------------------------------------------

class ProbeFlow(Orchestrator):
    """Two ``worker`` steps per task: the second must find what the first left in the sandbox."""

    def next_role(self):
        return None if self.state.get("steps_done", 0) >= 2 else "worker"


class Worker(Agent):
    uses_runtime = True

    async def step(self, orch):
        n = int((await orch.get_payload())["n"])
        box = await self.runtime.acquire(orch.task_id)
        done = orch.state.get("steps_done", 0)
        if done == 0:
            await box.write_file("n.txt", str(n))
            result = await box.exec("sleep 300 > /dev/null 2>&1 & cat n.txt")  # a straggler the pid ns must end
            orch.state.update(first_box=box.id, first=result.stdout)
            if n % 3 == 0:
                raise RuntimeError(f"planned failure of task {n} while it holds a sandbox")
        else:
            orch.state.update(second_box=box.id, second=(await box.read_file("n.txt")).decode())
        orch.state["steps_done"] = done + 1


@pytest.fixture
def probe_workflow(plugin_host, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "sandbox_probe.yaml").write_text(
        "defaults:\n  - matrix_base\n  - sink: jsonl\n  - override /runtime: sandbox\n  - _self_\n"
        "workflow: sandbox_probe\n"
        "dataset: {loader: range, size: 12}\n"
        "agents:\n  worker: {type: sandbox_probe.worker, max_in_flight: 8}\n"
    )
    module = types.ModuleType("sandbox_probe_plugin")
    module.register_workflows = hookimpl(lambda register: register(WorkflowSpec("sandbox_probe", ProbeFlow)))
    module.register_agents = hookimpl(lambda register: register(AgentSpec("sandbox_probe.worker", Worker)))
    module.register_config_dirs = hookimpl(lambda register: register(ConfigDirSpec("sandbox_probe", conf)))
    plugin_host.register(module, name="sandbox-probe", package="sandbox-tests")
    return plugin_host


def test_a_run_releases_every_sandbox_of_done_and_failed_tasks(matrix_ray, probe_workflow, tmp_path):
    out = tmp_path / "probe.jsonl"
    root = tmp_path / "sbx"
    summary = matrix_core.run("sandbox_probe", [
        f"output.path={out}", f"runtime.temp_root={root}", "runtime.max_sandboxes=4", "runtime.warm_pool=2",
        "run.max_concurrent_tasks=8", "run.progress=off",
    ])
    records = {r["payload"]["n"]: r for r in read_records(out)}
    assert_exactly_once(records.values(), [f"{i}#0" for i in range(12)])
    assert summary.done == 8 and summary.failed == 4
    for n, r in records.items():
        s = r["state"]
        if n % 3 == 0:
            assert r["status"] == "failed" and "planned failure" in r["error"]["message"]
        else:
            assert r["status"] == "done" and s["first"] == s["second"] == str(n) and s["first_box"] == s["second_box"]
    rt = summary.runtime
    # 12 tasks through 4 sandboxes: leases were given back as tasks were written, not at the end.
    assert rt["created"] >= 12 and rt["peak_leased"] <= 4 and rt["released"] == rt["created"]
    assert (rt["existing"], rt["leased"], rt["processes"], rt["work_dirs"]) == (0, 0, 0, 0)
    assert sandbox_dirs(root) == [] and sandbox_processes(root) == []


def test_a_workflow_needing_a_runtime_without_one_is_a_clear_error(matrix_ray, probe_workflow, tmp_path):
    with pytest.raises(matrix_core.ConfigError, match="set runtime=NAME"):
        matrix_core.run("sandbox_probe", [f"output.path={tmp_path / 'x.jsonl'}", "runtime=none", "run.progress=off"])
