"""python -m benchmarks.report: the results in benchmarks/results/*.json as Markdown tables."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


COLUMNS = {
    "core": ["size", "mode", "tasks_per_s", "hops_per_s", "vs_default", "peak_cluster_pss_mb", "idle_cluster_pss_mb"],
    "durability": ["size", "mode", "tasks_per_s", "hops_per_s", "vs_off"],
    "protocol": ["turns", "bytes", "orchestrator_us", "plain_dict_us", "ratio_vs_dict"],
    "client": ["concurrency", "direct_us_per_call", "client_us_per_call", "overhead_us", "ratio"],
}


def main() -> None:
    for suite, columns in COLUMNS.items():
        path = RESULTS / f"{suite}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        print(f"### {suite}\n\n`{data['command']}` — {data['date']}, {data['machine']['cpus']} CPUs, "
              f"Python {data['machine']['python']}, Ray {data['machine']['ray']}\n")
        print(table(data["rows"], columns) + "\n")


if __name__ == "__main__":
    main()
