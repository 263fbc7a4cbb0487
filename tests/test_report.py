"""`matrix report` on outputs of small real runs (tau2 on the fake LLM, Coral on simllm with
injected server errors), rendered by a real headless Chromium over the DevTools protocol:
no console error, no script exception, every plot decoded."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import matrix_core
from matrix_core.cli import main
from matrix_core.testing import read_records

pytestmark = pytest.mark.slow

CORE_PLOTS = ["Task latency distribution", "Per-role step latency", "Turns per task", "Tokens per role", "Failures by reason", "Throughput over time"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def outputs(matrix_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    tau2 = root / "tau2.jsonl"
    matrix_core.run("tau2", ["llm=fake", f"output.path={tau2}", "run.progress=off", "run.trials=2", "max_steps=6",
                             "task_ids=[update_task_1,update_task_with_message_history,create_task_1]"])
    coral = root / "coral.jsonl"
    # Server errors with no retry: some dialogues fail, so the failure plot has bars.
    matrix_core.run("coral", ["llm=simllm", f"output.path={coral}", "run.progress=off", "dataset.limit=12", "max_turns=4",
                              "llm.time_scale=20", "llm.faults.rate_500=0.15", "llm.client.max_retries=0"])
    return {"tau2": tau2, "coral": coral}


def make_report(output: Path) -> Path:
    page = output.with_suffix(".html")
    result = CliRunner().invoke(main, ["report", str(output), "-o", str(page)])
    assert result.exit_code == 0, result.output
    return page


def test_report_of_a_tau2_run_renders_in_chromium(outputs, tmp_path):
    records = read_records(outputs["tau2"])
    assert len(records) == 6 and {r["domain"] for r in records} == {"mock"}
    seen = render_in_chromium(make_report(outputs["tau2"]), tmp_path / "tau2.png")
    assert seen["errors"] == []
    assert seen["images"] == CORE_PLOTS + ["tau2 reward per domain", "tau2 pass^k", "tau2 termination reasons"]
    assert seen["broken_images"] == []
    assert "pass^2[mock]" in seen["text"] and "avg_reward[mock]" in seen["text"]


def test_report_of_a_coral_run_renders_in_chromium(outputs, tmp_path):
    records = read_records(outputs["coral"])
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 12 and failed, "the injected 500s should have failed some dialogues"
    seen = render_in_chromium(make_report(outputs["coral"]), tmp_path / "coral.png")
    assert seen["errors"] == []
    assert seen["images"] == CORE_PLOTS + ["Coral accuracy and agreement"]
    assert seen["broken_images"] == []
    assert "agreement_rate" in seen["text"] and "accuracy" in seen["text"]


def test_report_of_a_partial_output_and_bad_input(outputs, tmp_path):
    partial = tmp_path / "partial.jsonl"
    lines = outputs["coral"].read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # torn last line: a run still going
    page = make_report(partial).read_text()
    assert "5 records" in page and "1 unreadable line(s) skipped" in page
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and result.output.strip() == f"matrix: error: output not found: {tmp_path / 'missing.jsonl'}"


def test_the_browser_check_sees_console_errors_and_broken_images(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="broken" src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom"); undefined_function();</script></body></html>')
    seen = render_in_chromium(page, tmp_path / "bad.png")
    assert seen["broken_images"] == ["broken"]
    assert any("boom" in e for e in seen["errors"]) and any(e.startswith("exception") for e in seen["errors"])


# --- a real browser, driven over the DevTools protocol ------------------------------------

COLLECT = """(() => ({
  images: [...document.images].map(i => i.alt),
  broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
  text: document.body.innerText,
}))()"""


def render_in_chromium(page: Path, screenshot: Path) -> dict:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install.sh installs Debian's chromium)")
    profile = tempfile.mkdtemp(prefix="mxchrome")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        ws_url = None
        deadline = time.time() + 120
        while ws_url is None and time.time() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}")
            if "DevTools listening on " in line:
                ws_url = line.split("DevTools listening on ", 1)[1].strip()
        assert ws_url, "chromium did not open its DevTools port"
        port = ws_url.split("://", 1)[1].split("/", 1)[0]
        target = next(t for t in json.load(urllib.request.urlopen(f"http://{port}/json/list", timeout=30)) if t["type"] == "page")
        return asyncio.run(_drive(target["webSocketDebuggerUrl"], page.resolve().as_uri(), screenshot))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(ws_url: str, url: str, screenshot: Path) -> dict:
    import aiohttp

    errors: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 1_000_000))
        loaded = asyncio.Event()
        replies: dict[int, asyncio.Future] = {}

        async def reader():
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in replies:
                    replies.pop(data["id"]).set_result(data)
                method, params = data.get("method"), data.get("params") or {}
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    errors.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params.get('args', [])]}")
                elif method == "Runtime.exceptionThrown":
                    errors.append(f"exception: {params['exceptionDetails'].get('text')}")
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
                elif method == "Page.loadEventFired":
                    loaded.set()

        async def call(method: str, **params):
            i = next(ids)
            replies[i] = asyncio.get_running_loop().create_future()
            await ws.send_json({"id": i, "method": method, "params": params})
            reply = await asyncio.wait_for(replies[i], 120)
            assert "error" not in reply, reply
            return reply.get("result", {})

        task = asyncio.ensure_future(reader())
        for domain in ("Runtime", "Log", "Page"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        await asyncio.wait_for(loaded.wait(), 120)
        seen = (await call("Runtime.evaluate", expression=COLLECT, returnByValue=True))["result"]["value"]
        height = (await call("Runtime.evaluate", expression="Math.ceil(document.body.getBoundingClientRect().bottom + 32)", returnByValue=True))["result"]["value"]
        clip = {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1}
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        task.cancel()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return {**seen, "errors": errors}
