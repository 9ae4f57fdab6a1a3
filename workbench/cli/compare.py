"""``workbench compare``: runs scored on the same test rows, pair by pair."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import RunsDirOption, app


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or unique prefixes).")],
    level: Annotated[float, typer.Option(help="Confidence level of the intervals.", min=0.5, max=0.999)] = 0.95,
    runs_dir: RunsDirOption = None,
):
    """DeLong's paired test of the ROC AUCs of runs scored on the same test rows (Holm-adjusted for
    more than two runs)."""
    from ..comparison import compare_runs
    from ..view import number

    result = compare_runs(run_ids, runs_dir=runs_dir, level=level)
    holm = len(result.pairs) > 1
    typer.echo(f"{len(result.runs)} runs on the same {result.rows:,} test rows ({result.positive:,} positive); "
               f"DeLong's paired test, {level:.0%} intervals" + (f", p Holm-adjusted over {len(result.pairs)} pairs"
                                                                  if holm else ""))
    width = max(len(r.id) for r in result.runs)
    for record, auc in zip(result.runs, result.aucs):
        typer.echo(f"  {record.id:<{width}}  {record.name[:24]:<24}  ROC AUC {number(auc['roc_auc'])}  "
                   f"{level:.0%} CI {number(auc['low'])}–{number(auc['high'])}")
    for pair in result.pairs:
        p = _p(pair["p_value"]) + (f"  p(Holm) {_p(pair['p_holm'])}" if holm else "")
        typer.echo(f"  {pair['a']} vs {pair['b']}: ΔAUC {pair['delta']:+.4f}  {level:.0%} CI {pair['low']:+.4f} to "
                   f"{pair['high']:+.4f}  z {pair['z']:+.2f}  p {p}")


def _p(value) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"
