"""Step options, templates, schemas and loaders, without Ray or a model."""
from __future__ import annotations

import json

import pytest

from matrix_core import Choice, ConfigError, LLMResult, Usage
from matrix_plugin_generate import RenderError, Step, StepInputError, Template, check_run, load_parquet
from matrix_plugin_generate.templates import Placeholder

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["score"]}


def result(*texts):
    return LLMResult(content=texts[0], tool_calls=[], usage=Usage(), latency_s=0, model="m", endpoint="e",
                     choices=[Choice(content=t) for t in texts])


def config(tmp_path, rows, **top):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agents = top.pop("agents", {"generate": {"type": "generate.step"}})
    return {"steps": list(agents), "text_key": "text", "dataset": {"loader": "jsonl", "path": str(path)}, "agents": agents, **top}


def test_prompt_from_template_column_or_chat_column_with_system_prompt():
    row = {"q": "Why?", "chat": [{"role": "user", "content": "hi"}], "who": "a tutor"}
    step = Step.resolve("a", {"prompt": "Q: {{ q }} after {{ draft | upper }}", "system_prompt": "You are {{ who }}."}, {})
    assert step.messages(row, {"draft": "d1"}) == [
        {"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "Q: Why? after D1"}]
    assert Step.resolve("b", {}, {"messages_key": "chat"}).messages(row, {}) == row["chat"]
    assert Step.resolve("c", {}, {"text_key": "q"}).messages(row, {}) == [{"role": "user", "content": "Why?"}]
    # Odd column names through `row`, JSON of earlier outputs with the json filter.
    step = Step.resolve("d", {"prompt": '{{ row["first name"] }} {{ s | json }}'}, {})
    assert step.messages({"first name": "Ada"}, {"s": {"k": "<v>"}})[0]["content"] == 'Ada {"k": "<v>"}'


def test_a_row_the_template_cannot_render_is_an_error_naming_the_column():
    step = Step.resolve("a", {"prompt": "{{ topic }}"}, {})
    with pytest.raises(RenderError, match="'topic' is undefined"):
        step.messages({"other": 1}, {})
    with pytest.raises(StepInputError, match="no column 'text'"):
        Step.resolve("b", {}, {"text_key": "text"}).messages({"x": 1}, {})
    # The sandbox refuses what a template must not reach.
    with pytest.raises(RenderError):
        Step.resolve("c", {"prompt": "{{ x.__class__.__mro__ }}"}, {}).messages({"x": 1}, {})


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="template syntax error on line 1"):
        Template("{{ a", "agents.x.prompt")
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        Step.resolve("a", {"json_schema": {"type": "objekt"}}, {"text_key": "t"})
    with pytest.raises(ConfigError, match="json_schema is not JSON"):
        Step.resolve("a", {"json_schema": "{nope"}, {"text_key": "t"})
    with pytest.raises(ConfigError, match="no prompt"):
        Step.resolve("a", {}, {})
    with pytest.raises(ConfigError, match="agents.a.tempature is not a generate.step option"):
        Step.resolve("a", {"tempature": 1}, {"text_key": "t"})
    with pytest.raises(ConfigError, match="n must be an integer"):
        Step.resolve("a", {"n": 0}, {"text_key": "t"})


def test_json_outputs_are_parsed_and_checked_invalid_ones_recorded():
    step = Step.resolve("s", {"json_schema": json.dumps(SCHEMA)}, {"text_key": "t"})
    assert step.output(result('{"score": 4}')) == ({"score": 4}, None)
    assert step.output(result('{"score": 9}')) == (None, "does not match the schema at score: 9 is greater than the maximum of 5")
    value, why = step.output(result("nah"))
    assert value is None and why.startswith("not JSON")
    values, why = step.output(result('{"score": 1}', "{}", '{"score": 2}'))
    assert values == [{"score": 1}, None, {"score": 2}] and why == "choice 1: does not match the schema: 'score' is a required property"
    plain = Step.resolve("p", {"n": 2}, {"text_key": "t"})
    assert plain.params == {"n": 2} and plain.output(result("a", "b")) == (["a", "b"], None)


def test_per_row_params_override_the_step_params():
    step = Step.resolve("a", {"params": {"temperature": 0.7, "max_tokens": 9}}, {"text_key": "t", "params_key": "p", "params": {"top_p": 0.5}})
    assert step.row_params({"p": {"temperature": 0.1}}) == {"top_p": 0.5, "temperature": 0.1, "max_tokens": 9}
    assert step.row_params({"p": '{"seed": 3}'})["seed"] == 3 and step.row_params({"p": None})["temperature"] == 0.7
    with pytest.raises(StepInputError, match="not a sampling param"):
        step.row_params({"p": {"messages": []}})
    with pytest.raises(StepInputError, match="not an object"):
        step.row_params({"p": [1]})


def test_check_run_names_the_missing_column_and_the_row(tmp_path):
    good = config(tmp_path, [{"text": "a", "topic": "t"}])
    assert check_run(good) == ["generate"]
    with pytest.raises(ConfigError, match=r"'topics' is not a column of row 1 of .*d.jsonl \(columns: text, topic\)"):
        check_run({**good, "agents": {"generate": {"type": "generate.step", "prompt": "{{ topics }}"}}})
    with pytest.raises(ConfigError, match=r"row 1 of .*: row has no column 'question'"):
        check_run({**good, "text_key": "question"})
    # Earlier steps' outputs are known to later templates (as placeholders: attributes work).
    chain = {"a": {"type": "generate.step"}, "b": {"type": "generate.step", "prompt": "{{ a.score }} {% for x in a %}{{ x }}{% endfor %}"}}
    assert check_run({**good, "steps": ["a", "b"], "agents": chain}) == ["a", "b"]
    with pytest.raises(ConfigError, match="agents.b.prompt: 'a' is not a column .* nor an earlier step"):  # a later step is not an earlier one
        check_run({**good, "steps": ["b", "a"], "agents": chain})
    with pytest.raises(ConfigError, match="name of a column"):
        check_run({**good, "steps": ["topic"], "agents": {"topic": {"type": "generate.step"}}})
    with pytest.raises(ConfigError, match="needs agents.c.type=generate.step"):
        check_run({**good, "steps": ["c"]})


def test_placeholder_renders_empty():
    assert Template("[{{ p.x[0].y }}]", "t").render({"p": Placeholder()}) == "[]"


def test_parquet_loader_streams_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(5)), "text": [f"t{i}" for i in range(5)]}), tmp_path / "a.parquet")
    rows = list(load_parquet({"path": str(tmp_path), "batch_rows": 2}))
    assert rows == [(i + 1, {"id": i, "text": f"t{i}"}) for i in range(5)]
    with pytest.raises(ConfigError, match="no parquet file"):
        load_parquet({"path": str(tmp_path / "none")})


def test_hf_disk_loader_reads_a_saved_dataset_and_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    from matrix_plugin_generate import load_hf_disk

    rows = {"id": [1, 2], "text": ["a", "b"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict({"id": [3], "text": ["c"]})}).save_to_disk(str(tmp_path / "two"))
    assert list(load_hf_disk({"path": str(tmp_path / "one")})) == [(1, {"id": 1, "text": "a"}), (2, {"id": 2, "text": "b"})]
    assert list(load_hf_disk({"path": str(tmp_path / "two"), "split": "test"})) == [(1, {"id": 3, "text": "c"})]
    with pytest.raises(ConfigError, match="dataset.split='dev' is not in"):
        load_hf_disk({"path": str(tmp_path / "two"), "split": "dev"})
    with pytest.raises(ConfigError, match="not a directory written by datasets"):
        load_hf_disk({"path": str(tmp_path / "none")})
