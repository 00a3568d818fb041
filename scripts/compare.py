"""Compare the MLflow runs of one experiment: key params and metrics, best FID ratio first.

    python scripts/compare.py                       # the experiment of the last training run here
    python scripts/compare.py --experiment NAME --metric fid_ratio --metric kid_mean
    make compare                                    # the same, against the project's store

Reads the store of MLFLOW_TRACKING_URI, else the project's sqlite:///mlflow.db (as the stages do).
"""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ganforge import tracking
from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, help=__doc__)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command()
def compare(
    experiment: str = typer.Option(None, help="MLflow experiment name; default: the experiment of the run "
                                   "recorded in --run-json."),
    run_json: Path = typer.Option(Path("results/train/run.json"), help="Training run record to take the "
                                  "experiment from when --experiment is not given."),
    param: list[str] = typer.Option(list(tracking.COMPARE_PARAMS), "--param", help="A params.yaml key "
                                    "(dotted) to show; repeat for several."),
    metric: list[str] = typer.Option(list(tracking.COMPARE_METRICS), "--metric", help="A metric to show; "
                                     "repeat for several. Rows are ordered by fid_ratio, lowest first."),
    max_runs: int = typer.Option(50, min=1, help="Show at most this many runs."),
) -> None:
    """Print a table of an experiment's runs with their key params and metrics, best fid_ratio first."""
    with user_errors():
        if experiment is None and run_json.exists():
            experiment = tracking.experiment_of(run_json)
        df = tracking.compare_runs(experiment, params=param, metrics=metric, max_results=max_runs)
        table = Table(title=f"{experiment}: {len(df)} run(s), best fid_ratio first "
                      f"({tracking.tracking_uri()})")
        for col in df.columns:
            table.add_column(col, justify="left" if col in ("run_id", "run_name", "status") else "right",
                             no_wrap=col == "run_id")
        for row in df.itertuples(index=False):
            table.add_row(*(_cell(v) for v in row))
        Console(width=200).print(table)


if __name__ == "__main__":
    app()
