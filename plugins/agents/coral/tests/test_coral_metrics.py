"""CoralMetrics over written records."""
import pytest

from matrix_plugin_coral import CoralMetrics


def record(correct, agreement, turns, answers=None, first_correct=False, status="done", usage=(10, 4)):
    answers = answers or ["B"] * turns
    return {
        "status": status,
        "state": {
            "finished": status == "done", "correct": correct, "first_correct": first_correct, "agreement": agreement,
            "num_turns": turns, "turns": [{"agent": "x", "answer": a, "agrees": False} for a in answers],
        },
        "history": [{"role": "assistant", "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}} for _ in range(turns)]
        + [{"role": "assistant"}],  # a turn without usage counts nothing
    }


def test_metrics_aggregate_finished_dialogues_only():
    m = CoralMetrics({})
    m.add(record(True, True, 2, first_correct=True))
    m.add(record(True, True, 3))
    m.add(record(False, False, 6, answers=["A", None, "A", None, "C", "D"]))
    m.add(record(False, False, 1, status="failed"))
    m.add({"status": "failed", "state": {"dataset_row": "x row 3"}, "history": []})  # unreadable row
    r = m.result()
    assert r["dialogues"] == 3 and r["failed"] == 2
    assert r["accuracy"] == pytest.approx(2 / 3) and r["first_answer_accuracy"] == pytest.approx(1 / 3)
    assert r["agreement_rate"] == pytest.approx(2 / 3) and r["mean_turns"] == pytest.approx(11 / 3)
    assert r["unextracted_answer_rate"] == pytest.approx(2 / 11)
    assert r["completion_tokens_per_dialogue"] == pytest.approx(4 * 11 / 3)
    assert r["total_tokens_per_dialogue"] == pytest.approx(14 * 11 / 3)


def test_metrics_of_an_empty_run_are_zero():
    r = CoralMetrics({}).result()
    assert r["dialogues"] == 0 and r["accuracy"] == 0 and r["mean_turns"] == 0
