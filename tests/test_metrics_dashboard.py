"""`matrix metrics dashboard`: the shipped Grafana dashboard charts every metric the runtime
exports, and the Prometheus config points at Ray's service-discovery file."""
from __future__ import annotations

import json
import re

import yaml
from click.testing import CliRunner

from matrix_core._private.metrics import METRIC_NAMES, SERVICE_DISCOVERY_FILE
from matrix_core.cli import main


def test_dashboard_and_prometheus_config_are_written(tmp_path):
    out = tmp_path / "grafana"
    result = CliRunner().invoke(main, ["metrics", "dashboard", "-o", str(out), "--ray-temp-dir", str(tmp_path / "ray")])
    assert result.exit_code == 0, result.output
    dashboard = json.loads((out / "matrix-runs.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for name in METRIC_NAMES:  # Ray's exporter prefixes every name with ray_
        assert any(re.search(rf"\bray_{name}(_bucket)?\{{", e) for e in exprs), f"{name} is on no panel"
    assert all('run_id=~"$run_id"' in e and 'workflow=~"$workflow"' in e for e in exprs)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "workflow", "run_id"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    prometheus = yaml.safe_load((out / "prometheus.yml").read_text())
    files = prometheus["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert files == [str((tmp_path / "ray" / SERVICE_DISCOVERY_FILE).resolve())]
    assert "Dashboards > Import" in result.output


def test_dashboard_into_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["metrics", "dashboard", "-o", str(blocker / "sub")])
    assert result.exit_code == 2 and result.output.startswith("matrix: error: cannot write to ") and result.output.count("\n") == 1
