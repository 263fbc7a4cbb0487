"""Throughput of the NaturalReasoning pipeline: the filter alone, Matrix end to end on the
simulated LLM, and the same stages as Ray Data batch inference (the paper's baseline).

    python plugins/agents/naturalreasoning/scripts/bench.py [--copies 10] [--num-cpus 2] [--batch-size 32]

The corpus is the packaged one repeated ``--copies`` times (400 documents each) in 8
shards. Both LLM runs use one simllm replica with the same settings and ``unparseable=pass``
(simllm replies filler text, never JSON): each document that passes the filter costs one
scorer and one generator call, capped at the same ``max_tokens``, in both systems.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

SIMLLM = {"backend": "simllm", "max_num_seqs": 256, "seed": 0}


def make_corpus(out: Path, copies: int, shards: int = 8) -> int:
    import importlib.resources

    source = importlib.resources.files("matrix_plugin_naturalreasoning") / "data" / "corpus"
    docs = [json.loads(l) for f in sorted(source.iterdir()) if f.name.endswith(".jsonl") for l in f.read_text().splitlines() if l.strip()]
    docs = [{**d, "copy": c} for c in range(copies) for d in docs]
    out.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        (out / f"shard-{s:03d}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[s::shards]))
    return len(docs)


def bench_filter_function(corpus: Path) -> tuple[int, float]:
    from matrix_plugin_naturalreasoning import judge

    texts = [json.loads(l)["text"] for f in sorted(corpus.iterdir()) for l in f.read_text().splitlines()]
    t = time.perf_counter()
    kept = sum(judge(text, {}).keep for text in texts)
    return kept, len(texts) / (time.perf_counter() - t)


def run_matrix(corpus: Path, out: Path, overrides: list[str]):
    import matrix_core

    return matrix_core.run("naturalreasoning", [f"dataset.path={corpus}", "dataset.limit=null", f"output.path={out}", "run.progress=off", *overrides])


def ray_data_pipeline(corpus: Path, endpoints, batch_size: int, actors: int, cfg: dict) -> tuple[int, int, float]:
    """filter -> scorer -> generator as map_batches stages; each LLM batch waits for its slowest reply."""
    import ray.data

    from matrix_core import LLMClient
    from matrix_plugin_naturalreasoning import QUESTION_SCHEMA, SCORE_SCHEMA, judge

    agents = cfg["agents"]

    def filter_batch(batch):
        keep = [judge(t, agents["filter"]).keep for t in batch["text"]]
        return {k: [v for v, ok in zip(vals, keep) if ok] for k, vals in batch.items()}

    class LLMStage:
        def __init__(self, role, schema):
            self.role, self.schema = agents[role], schema

        def __call__(self, batch):
            async def one(client, text):
                prompt = self.role["prompt"].replace("{passage}", text[: self.role["max_doc_chars"]])
                messages = [{"role": "system", "content": self.role["system_prompt"]}, {"role": "user", "content": prompt}]
                r = await client.chat(messages, json_schema=self.schema, max_tokens=self.role["max_tokens"], temperature=self.role["temperature"])
                return r.content, r.usage.total_tokens

            async def all_of(texts):
                client = LLMClient(endpoints, max_concurrency_per_endpoint=1024)
                try:
                    return await asyncio.gather(*(one(client, t) for t in texts))
                finally:
                    await client.aclose()

            replies = asyncio.run(all_of(list(batch["text"])))
            return {**batch, f"reply_{id(self)}": [c for c, _ in replies], f"tokens_{id(self)}": [n for _, n in replies]}

    class Scorer(LLMStage):
        def __init__(self):
            super().__init__("scorer", SCORE_SCHEMA)

    class Generator(LLMStage):
        def __init__(self):
            super().__init__("generator", QUESTION_SCHEMA)

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    t = time.perf_counter()
    ds = ray.data.read_json([str(p) for p in sorted(corpus.iterdir())])
    ds = ds.select_columns(["text"]).map_batches(filter_batch, batch_size=256)
    ds = ds.map_batches(Scorer, batch_size=batch_size, concurrency=actors, num_cpus=0.1)
    ds = ds.map_batches(Generator, batch_size=batch_size, concurrency=actors, num_cpus=0.1)
    rows = ds.take_all()
    wall = time.perf_counter() - t
    return len(rows), sum(v for r in rows for k, v in r.items() if k.startswith("tokens_")), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="Ray Data rows per LLM batch")
    ap.add_argument("--actors", type=int, default=4, help="Ray Data actors per LLM stage")
    ap.add_argument("--time-scale", type=float, default=1.0, help="simllm simulated seconds per real second")
    args = ap.parse_args()

    import ray

    from matrix_core import get_plugin_host
    from matrix_core.config import compose

    work = Path(tempfile.mkdtemp(prefix="nr-bench-"))
    try:
        corpus = work / "corpus"
        docs = make_corpus(corpus, args.copies)
        kept, fps = bench_filter_function(corpus)
        print(f"filter function: {docs} docs, {kept} kept ({kept / docs:.1%}), {fps:,.0f} docs/s (one process)")

        ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
        s = run_matrix(corpus, work / "filter.jsonl", ["llm=fake", "stages=[filter]", "rejects=count", "run.max_concurrent_tasks=1024"])
        print(f"matrix, filter stage only: {s.done} docs in {s.wall_s:.1f}s = {s.done / s.wall_s:,.0f} docs/s")

        llm = ["llm=simllm", f"llm.time_scale={args.time_scale}", "llm.max_num_seqs=256", "unparseable=pass", "rejects=count", "run.max_concurrent_tasks=512"]
        s = run_matrix(corpus, work / "e2e.jsonl", llm)
        q = s.metrics["questions_out"]
        print(f"matrix, end to end on simllm: {s.done} docs, {q} questions in {s.wall_s:.1f}s = {q / s.wall_s:.1f} questions/s, "
              f"{s.done / s.wall_s:.0f} docs/s, {s.tokens} tokens ({s.tokens / s.wall_s:.0f}/s)")

        cfg = compose("naturalreasoning", [f"dataset.path={corpus}", *llm])
        backend = get_plugin_host().get("llm_backend", "simllm")
        service = backend.start(cfg["llm"])
        try:
            rows, tokens, wall = ray_data_pipeline(corpus, service.endpoints, args.batch_size, args.actors, cfg)
        finally:
            service.stop()
        print(f"ray data, map_batches per stage (batch {args.batch_size}, {args.actors} actors/stage): {rows} questions in {wall:.1f}s = "
              f"{rows / wall:.1f} questions/s, {tokens} tokens ({tokens / wall:.0f}/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    main()
