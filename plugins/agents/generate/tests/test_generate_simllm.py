"""`matrix run generate` end to end on simllm: chained steps with a JSON schema, n samples
with logprobs through the Parquet and HF sinks, and the response cache counted at the server."""
from __future__ import annotations

import json

import pytest

import matrix_core
from matrix_core.testing import read_records

FAST = ["llm.time_scale=200", "llm.tick_ms=2", "llm.output_tokens.dist=uniform", "llm.output_tokens.min=4", "llm.output_tokens.max=12"]
JUDGE = "{type:object,properties:{score:{type:integer,minimum:1,maximum:5},why:{type:string}},required:[score,why],additionalProperties:false}"


def dataset(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run(*overrides):
    return matrix_core.run("generate", [*overrides, "run.hosts=1"], progress_mode="off")


def step_turns(record, step):
    return [t for t in record["history"] if t["agent"] == step]


def test_three_step_chain_with_a_json_schema_step(matrix_ray, tmp_path):
    rows = [{"id": i, "topic": t} for i, t in enumerate(["tides", "bees", "glass"])]
    rows.insert(2, {"id": 9, "subject": "no topic column"})  # its template fails: that task alone fails
    out = tmp_path / "chain.jsonl"
    summary = run(
        "llm=simllm", *FAST, f"dataset.path={dataset(tmp_path, rows)}", f"output.path={out}",
        "steps=[draft,judge,rewrite]", "~agents.generate",
        "+agents.draft.type=generate.step", "+agents.draft.prompt='Write two lines about {{ topic }}.'",
        "+agents.judge.type=generate.step", "+agents.judge.prompt='Rate this text: {{ draft }}'", f"+agents.judge.json_schema={JUDGE}",
        "+agents.judge.system_prompt='You grade texts about {{ topic }}. Reply with JSON.'",
        "+agents.rewrite.type=generate.step", "+agents.rewrite.prompt='Improve ({{ judge.score }}/5, {{ judge.why }}): {{ draft }}'",
    )
    assert (summary.done, summary.failed) == (3, 1)
    assert summary.metrics["draft: outputs"] == summary.metrics["judge: outputs"] == summary.metrics["rewrite: outputs"] == 3
    records = {r["task_id"]: r for r in read_records(out)}
    failed = records["9#0"]
    assert failed["status"] == "failed" and "step draft" in failed["error"]["message"] and "'topic' is undefined" in failed["error"]["message"]
    assert failed["subject"] == "no topic column"  # the row's columns are kept on failures too
    for i, topic in enumerate(["tides", "bees", "glass"]):
        r = records[f"{i}#0"]
        assert r["status"] == "done" and r["topic"] == topic and r["id"] == i
        assert isinstance(r["draft"], str) and r["draft"]
        assert set(r["judge"]) == {"score", "why"} and 1 <= r["judge"]["score"] <= 5 and not r["state"]["invalid"]
        assert isinstance(r["rewrite"], str) and r["rewrite"]
        # Each step saw the row and the outputs before it.
        assert step_turns(r, "draft")[0]["content"] == f"Write two lines about {topic}."
        system, user, answer = step_turns(r, "judge")
        assert system == {"role": "system", "content": f"You grade texts about {topic}. Reply with JSON.", "agent": "judge"}
        assert user["content"] == f"Rate this text: {r['draft']}" and json.loads(answer["content"]) == r["judge"]
        assert step_turns(r, "rewrite")[0]["content"] == f"Improve ({r['judge']['score']}/5, {r['judge']['why']}): {r['draft']}"
        assert all(t["model"] == "simllm" and t["finish_reason"] in ("stop", "length") for t in r["history"] if t["role"] == "assistant")


def test_n_samples_with_logprobs_reach_the_record_parquet_and_hf(matrix_ray, tmp_path):
    pytest.importorskip("pyarrow")
    from matrix_plugin_hfdatasets import load_records
    from matrix_plugin_parquet import read_parquet_records

    data = dataset(tmp_path, [{"id": i, "text": f"Say something about number {i}."} for i in range(3)])
    common = ["llm=simllm", *FAST, "llm.reasoning_tokens=5", f"dataset.path={data}", "n=3", "+params.logprobs=true", "+params.top_logprobs=2"]
    run(*common, "sink=parquet", f"output.path={tmp_path / 'out.parquet'}")
    run(*common, "sink=hfdatasets", f"output.path={tmp_path / 'out.hf'}", "dataset.limit=1")
    parquet = read_parquet_records(tmp_path / "out.parquet")
    hf = load_records(tmp_path / "out.hf")
    assert len(parquet) == 3 and len(hf) == 1
    for record in parquet + hf:
        samples = record["generate"]
        assert isinstance(samples, list) and len(samples) == 3 and len(set(samples)) == 3
        (answer,) = [t for t in record["history"] if t["role"] == "assistant"]
        assert [c["content"] for c in answer["choices"]] == samples
        for choice in answer["choices"]:
            assert [lp["token"].strip() for lp in choice["logprobs"]] == choice["content"].split()
            assert all(len(lp["top_logprobs"]) == 2 and lp["top_logprobs"][0]["token"] == lp["token"] for lp in choice["logprobs"])
            assert len(choice["reasoning_content"].split()) == 5
        assert answer["logprobs"] == answer["choices"][0]["logprobs"] and answer["reasoning_content"]


def test_cache_rerun_after_changing_step_two_makes_no_step_one_call(matrix_ray, sim_server, tmp_path):
    sim = sim_server
    rows = 4
    data = dataset(tmp_path, [{"id": i, "topic": f"topic {i}"} for i in range(rows)])
    common = [
        "llm=endpoint", f"llm.base_url=http://127.0.0.1:{sim.port}/v1", "llm.model=simllm", f"dataset.path={data}",
        "cache.enabled=true", f"cache.path={tmp_path / 'cache'}", "steps=[draft,polish]", "~agents.generate",
        "+agents.draft.type=generate.step", "+agents.draft.prompt='Write about {{ topic }}.'",
        "+agents.polish.type=generate.step", "+params.temperature=0.8",
    ]
    first = run(*common, "+agents.polish.prompt='Polish: {{ draft }}'", f"output.path={tmp_path / 'one.jsonl'}")
    assert sim.received == 2 * rows and first.llm_cache == {"hits": 0, "misses": 2 * rows}
    second = run(*common, "+agents.polish.prompt='Shorten: {{ draft }}'", f"output.path={tmp_path / 'two.jsonl'}")
    assert sim.received == 3 * rows  # only the changed step 2 reached the server
    assert second.llm_cache == {"hits": rows, "misses": rows} and second.metrics["draft: from cache"] == rows
    assert "llm cache: 4 hits, 4 misses" in second.text()
    one = {r["task_id"]: r for r in read_records(tmp_path / "one.jsonl")}
    two = {r["task_id"]: r for r in read_records(tmp_path / "two.jsonl")}
    assert len(one) == len(two) == rows
    for task_id, r in two.items():
        assert r["status"] == "done"
        assert json.dumps(r["draft"]) == json.dumps(one[task_id]["draft"])  # byte-identical step-1 outputs
        draft_answer = step_turns(r, "draft")[-1]
        assert draft_answer["cached"] is True and draft_answer["content"] == r["draft"]
        assert "cached" not in step_turns(r, "polish")[-1] and step_turns(r, "polish")[0]["content"] == f"Shorten: {r['draft']}"
