"""python -m benchmarks.report [--update docs/benchmarks.md]: the tables in
benchmarks/results/*.json as Markdown, printed or written between the file's markers."""
from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

from ._common import RESULTS

ORDER = ("upstream", "upstream_sim", "scheduling", "scaleout", "simfit", "overhead", "scale", "offload", "realmodel", "durability", "protocol", "client")


BEGIN, END = "<!-- results:begin (python -m benchmarks.report --update) -->", "<!-- results:end -->"


def render() -> None:
    for suite in ORDER:
        path = RESULTS / f"{suite}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        if "table" not in data:
            continue  # written by an older version of the suites
        m = data["machine"]
        mode = " **(quick mode: smoke-test sizes, not a measurement to quote)**" if data.get("quick") else ""
        print(f"### {suite}{mode}\n\n`{data['command']}` — {data['date']}, {m['cpus']} CPUs ({m.get('cpu_model', '?')}), "
              f"Python {m['python']}, Ray {m['ray']}, load average at start {m.get('load_avg_at_start')}; "
              f"{data.get('repeats', 1)} repeats: median [min-max]\n")
        print(data["table"] + "\n")
        if (RESULTS / f"{suite}.png").exists():
            print(f"![{suite}](../benchmarks/results/{suite}.png)\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["--update"]:
        render()
        return
    path = Path(argv[1] if len(argv) > 1 else "docs/benchmarks.md")
    text = path.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{path}: no {BEGIN} ... {END} markers to write the tables between")
    out = io.StringIO()
    with redirect_stdout(out):
        render()
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + BEGIN + "\n\n" + out.getvalue() + END + rest.split(END, 1)[1])
    print(f"tables written to {path}")


if __name__ == "__main__":
    main()
