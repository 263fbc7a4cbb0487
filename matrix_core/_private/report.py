"""``matrix report OUTPUT``: one self-contained HTML page of plots about a finished or partial run.

Everything comes from the output itself (the records and the ``.meta.json`` sidecar the
sink writes next to it), so a report can be made at any time, of any run, on any machine.
A workflow adds its own section through its :class:`~matrix_core.specs.RunMetrics`: the
table of ``result()`` and the figures of ``plots()``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import MatrixError

log = logging.getLogger("matrix.report")


def read_output(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a JSONL (``.jsonl``, ``.jsonl.zst``) or Parquet output, and how many
    lines could not be read (a torn last line of a run that is still going or crashed)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise MatrixError(f"output not found: {p}")
    if p.suffix == ".parquet" or p.is_dir():
        return _read_parquet(p), 0
    if p.suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise MatrixError(f"{p} is zstd-compressed: pip install zstandard to read it") from None
        with p.open("rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
        lines = raw.splitlines()
    else:
        lines = p.read_bytes().splitlines()
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict) and "task_id" in record:
            records.append(record)
        else:
            bad += 1
    return records, bad


def _read_parquet(p: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MatrixError(f"{p} is Parquet: pip install pyarrow to read it") from None
    rows = pq.read_table(p).to_pylist()
    for row in rows:  # nested fields may be stored as JSON text
        for key, value in list(row.items()):
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    row[key] = json.loads(value)
                except ValueError:
                    pass
    return rows


def owner_of(path: str | Path) -> dict[str, Any]:
    meta = Path(str(path) + ".meta.json")
    try:
        return json.loads(meta.read_text()) if meta.exists() else {}
    except (OSError, ValueError):
        return {}


# --- the numbers ----------------------------------------------------------------------


def task_latency(record: Mapping[str, Any]) -> float:
    """Queued plus working time over a task's hops (transit between actors is not in it)."""
    return sum(float(h.get("queued_s") or 0) + float(h.get("step_s") or 0) for h in record.get("hops") or [])


def failure_reason(record: Mapping[str, Any]) -> str:
    error = record.get("error") or {}
    return f"{error.get('role') or '?'}: {error.get('type') or 'error'}"


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = sum(r.get("status") == "done" for r in records)
    tokens = sum(_tokens(t) for r in records for t in r.get("history") or [])
    starts = [r["created_at"] for r in records if r.get("created_at")]
    ends = [r["created_at"] + task_latency(r) for r in records if r.get("created_at")]
    span = (max(ends) - min(starts)) if starts else 0.0
    return {
        "tasks": len(records), "done": done, "failed": len(records) - done,
        "turns": sum(len(r.get("history") or []) for r in records), "tokens": tokens,
        "span_s": round(span, 1), "tasks_per_s": round(len(records) / span, 2) if span > 0 else 0.0,
    }


def _tokens(turn: Mapping[str, Any], kind: str | None = None) -> int:
    usage = turn.get("usage") or {}
    if kind is not None:
        return int(usage.get(kind) or 0)
    return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)


# --- the plots ------------------------------------------------------------------------


def figure(title: str, width: float = 6.4, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_title(title)
    return fig, ax


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def core_plots(records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [plot(records) for plot in (_latency_plot, _step_plot, _turns_plot, _tokens_plot, _failures_plot, _throughput_plot)]


def _latency_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Task latency")
    latencies = [task_latency(r) for r in records if r.get("hops")]
    if latencies:
        ax.hist(latencies, bins=min(40, max(5, len(latencies) // 3)), color="#4c72b0")
        ax.set_xlabel("seconds (queued + step, all hops)")
        ax.set_ylabel("tasks")
    else:
        _empty(ax, "no hop timings in this output")
    return "Task latency distribution", fig


def _step_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Step latency per role")
    by_role: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for h in r.get("hops") or []:
            by_role[h.get("role") or "?"].append(float(h.get("step_s") or 0))
    if by_role:
        roles = sorted(by_role)
        ax.boxplot([by_role[k] for k in roles], showfliers=False)
        ax.set_xticks(range(1, len(roles) + 1), roles, rotation=20)
        ax.set_ylabel("seconds per step")
    else:
        _empty(ax, "no hop timings in this output")
    return "Per-role step latency", fig


def _turns_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Turns per task")
    turns = [len(r.get("history") or []) for r in records]
    if turns:
        counts = Counter(turns)
        ax.bar(list(counts), list(counts.values()), color="#55a868")
        ax.set_xlabel("turns")
        ax.set_ylabel("tasks")
    else:
        _empty(ax, "no tasks")
    return "Turns per task", fig


def _tokens_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Tokens per role")
    prompt: Counter[str] = Counter()
    completion: Counter[str] = Counter()
    for r in records:
        for t in r.get("history") or []:
            who = t.get("agent") or t.get("role") or "?"
            prompt[who] += _tokens(t, "prompt_tokens")
            completion[who] += _tokens(t, "completion_tokens")
    roles = sorted(k for k in set(prompt) | set(completion) if prompt[k] or completion[k])
    if roles:
        ax.bar(roles, [prompt[k] for k in roles], label="prompt", color="#8172b2")
        ax.bar(roles, [completion[k] for k in roles], bottom=[prompt[k] for k in roles], label="completion", color="#ccb974")
        ax.set_ylabel("tokens")
        ax.legend()
        ax.tick_params(axis="x", rotation=20)
    else:
        _empty(ax, "no token usage recorded")
    return "Tokens per role", fig


def _failures_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Failures by reason")
    reasons = Counter(failure_reason(r) for r in records if r.get("status") != "done")
    if reasons:
        items = reasons.most_common(12)[::-1]
        ax.barh([k for k, _ in items], [v for _, v in items], color="#c44e52")
        ax.set_xlabel("tasks")
    else:
        _empty(ax, "no failed tasks")
    return "Failures by reason", fig


def _throughput_plot(records: list[dict[str, Any]]) -> tuple[str, Any]:
    fig, ax = figure("Throughput over time")
    ends = sorted(r["created_at"] + task_latency(r) for r in records if r.get("created_at"))
    if len(ends) >= 2:
        t0 = min(r["created_at"] for r in records if r.get("created_at"))
        xs = [e - t0 for e in ends]
        ax.plot(xs, range(1, len(xs) + 1), color="#4c72b0", label="tasks finished")
        ax.set_xlabel("seconds since the first task started")
        ax.set_ylabel("tasks finished (cumulative)")
        bins = max(1, min(30, len(xs) // 2))
        width = (xs[-1] - xs[0]) / bins or 1.0
        rate = ax.twinx()
        counts = Counter(min(int((x - xs[0]) / width), bins - 1) for x in xs)
        rate.plot([xs[0] + (i + 0.5) * width for i in range(bins)], [counts[i] / width for i in range(bins)], color="#dd8452", label="tasks/s")
        rate.set_ylabel("tasks/s")
        ax.legend(loc="upper left")
        rate.legend(loc="lower right")
    else:
        _empty(ax, "fewer than two finished tasks")
    return "Throughput over time", fig


# --- the workflow's own section ---------------------------------------------------------


def workflow_section(records: list[dict[str, Any]], workflow: str | None, owner: Mapping[str, Any]):
    """(metrics table, [(title, figure)]) of the workflow's RunMetrics, if it has any."""
    if not workflow:
        return None
    from ..plugins import get_plugin_host

    try:
        spec = get_plugin_host().get("workflow", workflow)
    except MatrixError as exc:
        log.warning("no section for workflow %r: %s", workflow, exc)
        return None
    if spec.metrics is None:
        return None
    metrics = spec.metrics(_workflow_config(workflow, owner))
    for record in records:
        metrics.add(record)
    return metrics.result(), list(metrics.plots())


def _workflow_config(workflow: str, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow's default config with the run's trials: what its RunMetrics reads."""
    from ..config import compose

    overrides = [f"run.trials={int(owner.get('trials') or 1)}"]
    try:
        return compose(workflow, overrides)
    except Exception as exc:  # a workflow whose config cannot compose here still gets its metrics
        log.debug("config of %s not composed (%s); using the run's trials only", workflow, exc)
        return {"workflow": workflow, "run": {"trials": int(owner.get("trials") or 1)}}


# --- the page -------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def _plots_html(plots: list[tuple[str, Any]]) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}"><figcaption>{html.escape(title)}</figcaption></figure>'
        for title, fig in plots
    )


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;padding:0 1.5em;max-width:1500px;color:#222}
h1{margin-bottom:.2em} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0} th,td{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
td{font-variant-numeric:tabular-nums}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:1em}
figure{margin:0;border:1px solid #eee;padding:.5em} figure img{display:block;width:100%;height:auto} figcaption{color:#555;font-size:.9em;text-align:center}
"""


def render(path: str | Path, workflow: str | None = None) -> str:
    records, bad = read_output(path)
    owner = owner_of(path)
    workflow = workflow or owner.get("workflow")
    head = summary(records)
    sections = [
        "<h2>Run</h2>" + _table(head.items()),
        '<h2>Tasks, roles and throughput</h2><div class="plots">' + _plots_html(core_plots(records)) + "</div>",
    ]
    own = workflow_section(records, workflow, owner)
    if own is not None:
        table, plots = own
        sections.append(
            f"<h2>{html.escape(workflow)}: the workflow's own metrics</h2>" + _table(table.items())
            + ('<div class="plots">' + _plots_html(plots) + "</div>" if plots else "")
        )
    note = f" &middot; {bad} unreadable line(s) skipped (a partial output)" if bad else ""
    title = f"Matrix run report: {workflow or 'output'}"
    return (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class=\"meta\">{html.escape(str(path))} &middot; {len(records)} records &middot; made {time.strftime('%Y-%m-%d %H:%M:%S')}{note}</p>"
        + "".join(sections) + "</body></html>\n"
    )


def write_report(path: str | Path, out: str | Path | None = None, workflow: str | None = None) -> Path:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MatrixError("matrix report draws with matplotlib: pip install 'matrix-core[report]'") from None
    target = Path(out) if out else Path(str(path) + ".report.html")
    page = render(path, workflow)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page)
    return target
