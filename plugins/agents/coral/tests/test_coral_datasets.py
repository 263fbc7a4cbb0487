"""Dataset loading: MMLU-Pro JSONL through the core loader, the shipped question set, the hf loader."""
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from matrix_core import ConfigError, get_plugin_host
from matrix_plugin_coral import CoralOrchestrator, load_hf, question_from_row

PLUGIN = Path(__file__).resolve().parent.parent
SHIPPED = PLUGIN / "matrix_plugin_coral" / "data" / "questions.jsonl"

MMLU_PRO = [
    {
        "question_id": 70, "question": "Typical advertising regulatory bodies suggest, for example that adverts must not:",
        "options": ["Safe practices", "Unsafe practices", "Distress", "Fear", "Serious offence", "Encourage illegal acts",
                    "Cause unnecessary fear", "Jealousy", "Discrimination", "Unsafe practices, fear and offence"],
        "answer": "I", "answer_index": 8, "cot_content": "", "category": "business", "src": "ori_mmlu-business_ethics",
    },
    {"question_id": 71, "question": "Which is even?", "options": ["3", "5", "8", "9"], "answer_index": 2},
]


def load_script():
    spec = importlib.util.spec_from_file_location("coral_make_questions", PLUGIN / "scripts" / "make_questions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mmlu_pro_jsonl_through_the_core_loader(tmp_path):
    path = tmp_path / "mmlu_pro.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MMLU_PRO) + "{not json\n")
    loader = get_plugin_host().get("dataset_loader", "jsonl")
    rows = list(loader.load({"path": str(path)}))
    assert [n for n, _ in rows] == [1, 2, 3] and isinstance(rows[2][1], ValueError)
    first = CoralOrchestrator.from_row(rows[0][1], row_key="70", trial=0, config={"max_turns": 4})
    assert first.state["gold"] == "I" and first.state["kind"] == "choice" and first.state["max_turns"] == 4
    assert len(first.payload["options"]) == 10 and first.payload["category"] == "business"
    assert question_from_row(rows[1][1])["gold"] == "C"  # answer_index alone


def test_shipped_questions_are_the_scripts_output():
    script = load_script()
    assert SHIPPED.read_text(encoding="utf-8") == script.render(script.generate(0)), (
        "questions.jsonl differs from its script: python plugins/agents/coral/scripts/make_questions.py"
    )
    assert script.render(script.generate(1)) != SHIPPED.read_text(encoding="utf-8")


def test_shipped_questions_are_valid_and_their_answers_right():
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()]
    assert len(rows) == 200 and [r["question_id"] for r in rows] == list(range(200))
    kinds = {(r["category"], len(r["options"])) for r in rows}
    assert {("arithmetic", 0), ("arithmetic", 4), ("arithmetic", 10), ("logic", 4), ("logic", 7)} <= kinds
    checked = 0
    for row in rows:
        parsed = question_from_row(row)
        if row["options"]:
            assert row["answer"] == "ABCDEFGHIJ"[row["answer_index"]] and len(set(row["options"])) == len(row["options"])
            said = row["options"][row["answer_index"]]
        else:
            said = parsed["gold"]
        # Recompute what can be recomputed from the text alone.
        if m := re.fullmatch(r"What is (\d+) (\+|-|times) (\d+)\?", row["question"]):
            a, op, b = int(m[1]), m[2], int(m[3])
            assert int(said) == {"+": a + b, "-": a - b, "times": a * b}[op], row
            checked += 1
        elif m := re.search(r"has (\d+) \w+\. A friend gives \w+ (\d+) more", row["question"]):
            assert int(said) == int(m[1]) + int(m[2]), row
            checked += 1
        elif m := re.search(r"in the sequence (\d+), (\d+), (\d+), (\d+)", row["question"]):
            s = [int(x) for x in m.groups()]
            step_next = s[3] + (s[3] - s[2]) if s[1] - s[0] == s[2] - s[1] else s[3] * (s[3] // s[2])
            assert int(said) == step_next, row
            checked += 1
    assert checked >= 40


def fake_datasets(monkeypatch, load):
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


def test_hf_loader_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"needs the 'datasets' package, which is not installed: pip install datasets"):
        load_hf({"name": "TIGER-Lab/MMLU-Pro", "split": "test"})


def test_hf_loader_with_a_dataset_that_is_not_available_offline(monkeypatch):
    def load(name, subset=None, split=None, streaming=False):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore\nlines")

    fake_datasets(monkeypatch, load)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        load_hf({"name": "nobody/nothing", "split": "test"})
    message = str(err.value)
    assert "Hugging Face dataset 'nobody/nothing' split 'test' is not available offline (HF_DATASETS_OFFLINE is set)" in message
    assert "ConnectionError" in message and "\n" not in message


def test_hf_loader_streams_rows(monkeypatch):
    calls = []

    def load(name, subset=None, split=None, streaming=False):
        calls.append((name, subset, split, streaming))
        return iter(MMLU_PRO)

    fake_datasets(monkeypatch, load)
    rows = list(load_hf({"name": "TIGER-Lab/MMLU-Pro", "split": "validation", "subset": None}))
    assert calls == [("TIGER-Lab/MMLU-Pro", None, "validation", True)]
    assert [n for n, _ in rows] == [1, 2] and rows[0][1]["question_id"] == 70


def test_hf_loader_needs_a_name():
    with pytest.raises(ConfigError, match="dataset.name is not set"):
        load_hf({"split": "test"})


def test_hf_loader_error_is_one_line_from_the_cli(tmp_path):
    env = {**__import__("os").environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        ["matrix", "run", "coral", "llm=fake", "dataset.loader=hf", "dataset.name=matrix-tests/no-such-dataset", f"output.path={tmp_path / 'o.jsonl'}"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("matrix: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "pip install datasets" in errors[0] or "not available offline" in errors[0]
    assert "Traceback" not in proc.stderr


def test_hf_loader_on_a_local_dataset_folder(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "mmlu"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MMLU_PRO))
    rows = list(load_hf({"name": str(folder), "split": "test"}))
    assert [r["question_id"] for _, r in rows] == [70, 71]
