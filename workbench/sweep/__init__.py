"""Sweeps: one pipeline over a grid of cells (workers × RUS ratio × trials, or any pipeline key),
resumable, fault-recording, with a watchdog on every cell.

A sweep file names (or embeds) a pipeline file and gives the axes::

    name: rus-sweep
    pipeline: quickstart.yaml          # relative to the sweep file, or a mapping embedded here
    axes:
      workers: [1, 2]                  # the cluster is scaled to exactly this many workers
                                       # (or nodes: [1, 2, 3], whole nodes of workers_per_node workers)
      sampling.ratio: ["1:1", "1:10"]  # any dotted key of the pipeline file
    trials: 3                          # cells per axis combination, each with its own seed
    seeds: 0                           # trial t gets seed 0 + t (or a list, one seed per trial)
    timeout: 10m                       # the watchdog: an attempt that runs longer is cancelled

:mod:`workbench.sweep.plan` reads the file and plans the cells (pure: no cluster, no store);
:mod:`workbench.sweep.runner` runs them and records each in the sweep store as it ends.
"""

from .plan import (
    NODES_AXIS,
    SWEEP_AXES,
    WORKERS_AXIS,
    Cell,
    LoadedSweep,
    SweepAxis,
    SweepSpec,
    cell_pipeline,
    load_sweep,
    plan_cells,
)
from .runner import SweepResult, run_sweep, sweep_table

__all__ = ["SweepSpec", "Cell", "LoadedSweep", "SweepAxis", "SWEEP_AXES", "SweepResult", "load_sweep", "plan_cells",
           "cell_pipeline", "run_sweep", "sweep_table", "WORKERS_AXIS", "NODES_AXIS"]
