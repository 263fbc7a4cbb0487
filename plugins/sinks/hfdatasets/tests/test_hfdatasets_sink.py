"""The datasets sink: save_to_disk round trip, resume from staged parts, push_to_hub through a test double."""
import datasets
import pytest

from matrix_core import ConfigError
from matrix_plugin_hfdatasets import HFDatasetsSink, load_records


def record(i, status="done"):
    return {
        "task_id": f"doc-{i}#0", "row_key": f"doc-{i}", "trial": 0, "status": status, "error": None, "steps": 3,
        "current_role": None, "created_at": 1.5 * i, "hops": [], "payload": {"text": f"passage {i}"},
        "history": [{"role": "assistant", "content": "ok", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}],
        "state": {"question": f"Why {i}?", "reasoning_steps": ["a", "b"], "scores": {"depth": i % 5}},
    }


def run_sink(cls, config, batches):
    sink = cls(config)
    existing = sink.existing_ids()
    sink.open()
    for batch in batches:
        sink.write(batch)
        sink.flush()
    sink.close()
    return existing, sink


def test_saved_dataset_round_trips_the_records(tmp_path):
    out = tmp_path / "nr.jsonl"  # the workflows' default output name becomes nr.hf/
    records = [record(i) for i in range(6)] + [record(6, "failed")]
    _, sink = run_sink(HFDatasetsSink, {"path": str(out), "columns": {"question": "state.question"}}, [records[:4], records[4:]])
    assert sink.location == str(tmp_path / "nr.hf")
    ds = datasets.load_from_disk(str(tmp_path / "nr.hf"))
    assert len(ds) == 7 and ds["question"][:2] == ["Why 0?", "Why 1?"]
    assert load_records(tmp_path / "nr.hf") == records
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_resumed_run_saves_the_whole_dataset(tmp_path):
    out = tmp_path / "out.hf"
    sink = HFDatasetsSink({"path": str(out)})
    sink.existing_ids()
    sink.open()
    sink.write([record(0), record(1)])
    sink.flush()  # ... and the run is killed before close: no dataset yet, the parts hold the rows
    assert not out.exists()
    existing, _ = run_sink(HFDatasetsSink, {"path": str(out)}, [[record(2)]])
    assert set(existing) == {"doc-0#0", "doc-1#0"}
    assert [r["task_id"] for r in load_records(out)] == ["doc-0#0", "doc-1#0", "doc-2#0"]
    run_sink(HFDatasetsSink, {"path": str(out)}, [[record(3)]])  # replacing an existing save
    assert len(load_records(out)) == 4
    HFDatasetsSink({"path": str(out)}).remove({"doc-1#0"})  # resume.retry_failed
    assert sorted(HFDatasetsSink({"path": str(out)}).existing_ids()) == ["doc-0#0", "doc-2#0", "doc-3#0"]


class HubPushDouble(HFDatasetsSink):
    """Test double for the Hub (no network here): records what would be pushed."""

    pushes = []

    def _push(self, dataset, repo, token, private, split):
        self.pushes.append((len(dataset), repo, token, private, split))


def test_push_to_hub_with_a_token_uses_the_hub_double(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_HF", "hf_secret")
    config = {"path": str(tmp_path / "o"), "push_to_hub": "me/nr", "token_env": "MY_HF", "split": "train"}
    run_sink(HubPushDouble, config, [[record(0), record(1)]])
    assert HubPushDouble.pushes == [(2, "me/nr", "hf_secret", True, "train")]


def test_push_to_hub_without_a_token_is_refused_before_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    sink = HubPushDouble({"path": str(tmp_path / "o"), "push_to_hub": "me/nr", "token_env": "NO_SUCH_TOKEN"})
    with pytest.raises(ConfigError, match=r"no Hugging Face token: set \$NO_SUCH_TOKEN"):
        sink.existing_ids()


def test_a_failed_push_keeps_the_local_save(tmp_path, monkeypatch, caplog):
    class FailingHubDouble(HFDatasetsSink):
        """Test double for the Hub: the push fails as a network error would."""

        def _push(self, *args):
            raise ConnectionError("hub unreachable")

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    run_sink(FailingHubDouble, {"path": str(tmp_path / "o"), "push_to_hub": "me/nr"}, [[record(0)]])
    assert len(load_records(tmp_path / "o")) == 1
    assert "push_to_hub me/nr failed (ConnectionError: hub unreachable)" in caplog.text and "hf_secret" not in caplog.text
