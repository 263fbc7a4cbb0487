"""matrix-plugin-cluster: ``matrix cluster`` provisions Ray on Slurm (submitit) or on this machine.

``start`` creates the cluster's Ray auth token and its info file
(``$MATRIX_HOME/clusters/NAME/cluster.json``, owner-only); ``matrix run --cluster NAME`` and
``matrix services ... --cluster NAME`` join it through :mod:`matrix_core._private.clusters`.
"""
from matrix_core import CommandSpec, hookimpl


@hookimpl
def register_commands(register):
    from .cli import cluster_group

    register(CommandSpec("cluster", cluster_group, "start, grow, inspect and stop a Ray cluster (Slurm or --local)"))
