"""``matrix metrics dashboard`` and ``matrix report``: seeing a run, live and afterwards."""
from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

import click

from ..errors import MatrixError
from .metrics import SERVICE_DISCOVERY_FILE

DASHBOARD = "matrix-runs.json"


@click.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics of runs (exported by Ray's metrics agent on every node)."""


@metrics_group.command("dashboard")
@click.option("-o", "--output-dir", default="matrix-metrics", show_default=True, type=click.Path(file_okay=False), help="Where to write the files.")
@click.option("--ray-temp-dir", default=None, help="Ray's temp dir on the head node (default: the one `matrix run` uses for a local Ray).")
def dashboard_command(output_dir: str, ray_temp_dir: str | None) -> None:
    """Write the Grafana dashboard and a Prometheus config that scrapes Ray's exporters."""
    temp_dir = Path(ray_temp_dir or os.path.join(tempfile.gettempdir(), "matrix-ray")).expanduser().resolve()
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        dashboard = out / DASHBOARD
        dashboard.write_text(resources.files("matrix_core").joinpath("dashboards", DASHBOARD).read_text())
        prometheus = out / "prometheus.yml"
        prometheus.write_text(prometheus_config(temp_dir / SERVICE_DISCOVERY_FILE))
    except OSError as exc:
        raise MatrixError(f"cannot write to {out}: {exc.strerror or exc}") from None
    click.echo(
        f"wrote {dashboard} and {prometheus}\n"
        f"  prometheus --config.file={prometheus}     # scrapes every Ray node listed in {temp_dir / SERVICE_DISCOVERY_FILE}\n"
        f"  then in Grafana: add that Prometheus as a data source, Dashboards > Import > {dashboard}"
    )


def prometheus_config(service_discovery: Path) -> str:
    return (
        "# Written by `matrix metrics dashboard`: scrape Ray's metrics agents (one per node).\n"
        "# Ray (or `matrix run`) keeps the file below up to date with the nodes' export ports.\n"
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        "scrape_configs:\n  - job_name: ray\n    file_sd_configs:\n"
        f"      - files: ['{service_discovery}']\n"
    )


@click.command("report")
@click.argument("output", type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="The HTML file (default: OUTPUT.report.html).")
@click.option("--workflow", default=None, help="The workflow that wrote OUTPUT (default: read from OUTPUT.meta.json).")
def report_command(output: str, out: str | None, workflow: str | None) -> None:
    """Write a self-contained HTML page of plots about a finished or partial OUTPUT."""
    from .report import write_report

    click.echo(f"wrote {write_report(output, out, workflow)}")
