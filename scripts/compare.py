"""Compare the MLflow runs of one experiment: status, key params and metrics, best FID ratio first.

    python scripts/compare.py                       # the experiment of the last training run here
    python scripts/compare.py --experiment NAME --metric fid_ratio --metric kid_mean
    python scripts/compare.py --all                 # also the KILLED and FAILED runs
    python scripts/compare.py --exp-prefix sweep-42-  # only the runs of DVC experiments named so (a sweep)
    make compare                                    # the same, against the project's store

Reads the store of MLFLOW_TRACKING_URI, else the project's sqlite:///mlflow.db (as the stages do).
Below the table, the champion of each registered model the experiment's runs registered versions of, with
its files checked against the sha256 recorded at registration: a champion whose files no longer match is
an error (exit code 1), never reported as the best model.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ganforge.cli import user_errors
from ganforge.errors import GanforgeError

app = typer.Typer(add_completion=False, help=__doc__)

PARAMS = ("base.dataset", "train.arch", "train.loss", "train.reg.kind", "train.augment", "train.kimg",
          "train.g.lr", "train.d.lr", "train.batch_size")
METRICS = ("fid_ratio", "fid", "kid_mean", "precision", "recall", "coverage", "classifier_score")
# An interrupted or failed run's metrics describe a model that was never finished: not a contender.
LEFT_OUT = ("KILLED", "FAILED")


def experiment_of(run_json: Path) -> str:
    """The name of the experiment that holds the run recorded in results/train/run.json."""
    from ganforge.tracking.store import Run

    run = Run.attach(run_json)
    return run.client.get_experiment(run.client.get_run(run.run_id).info.experiment_id).name


def compare_runs(experiment: str | None, params=PARAMS, metrics=METRICS, max_results: int = 100,
                 all_runs: bool = False, exp_prefix: str | None = None):
    """The runs of `experiment` as a pandas DataFrame (best fid_ratio first, unevaluated runs last).

    Columns: run_id, run_name, status, then the requested params and metrics that any run has.
    KILLED and FAILED runs are left out unless all_runs. exp_prefix: only the runs of the DVC experiments
    whose names start with it (the tag dvc_exp_name; a CI sweep names its experiments sweep-<run id>-...).
    """
    import mlflow
    import pandas as pd

    from ganforge.tracking.store import client, tracking_uri

    client()  # points mlflow at the project's store (or MLFLOW_TRACKING_URI)
    if experiment is None:
        raise GanforgeError("no experiment given (and no results/train/run.json to take it from)")
    if mlflow.get_experiment_by_name(experiment) is None:
        raise GanforgeError(f"no experiment named {experiment!r} in {tracking_uri()}")
    query = ""
    if exp_prefix is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", exp_prefix):  # it goes into the search filter as text
            raise GanforgeError(f"--exp-prefix {exp_prefix!r}: letters, digits and _.- only")
        query = f"tags.dvc_exp_name LIKE '{exp_prefix}%'"
    df = mlflow.search_runs(experiment_names=[experiment], filter_string=query, max_results=max_results,
                            order_by=["metrics.fid_ratio ASC", "attributes.start_time DESC"])
    if not all_runs and not df.empty:
        df = df[~df["status"].isin(LEFT_OUT)]
    if df.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "status"])
    df = df.rename(columns={"tags.mlflow.runName": "run_name"})
    # search_runs puts NULL metrics first for ASC on some stores: sort again, NaN last, stable
    if "metrics.fid_ratio" in df.columns:
        df = df.sort_values("metrics.fid_ratio", na_position="last", kind="stable")
    cols = ["run_id", "run_name", "status"]
    cols += [f"params.{p}" for p in params if f"params.{p}" in df.columns]
    cols += [f"metrics.{m}" for m in metrics if f"metrics.{m}" in df.columns]
    out = df.reindex(columns=cols).reset_index(drop=True)
    short = {c: c.split(".", 1)[1] for c in cols if c.startswith(("params.", "metrics."))}
    return out.rename(columns=short)


def champion_checks(experiment: str) -> list[tuple[str, int | None, str | None]]:
    """(registered model, champion version or None, why its files are not trusted or None) for each model
    that runs of `experiment` registered versions of (their tag registry.model), by name."""
    import mlflow

    from ganforge.tracking.promotion import CHAMPION
    from ganforge.tracking.serving import integrity_problem
    from ganforge.tracking.store import client

    c = client()
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`registry.model` LIKE 'ganforge-%'", max_results=1000)
    out = []
    for name in sorted({r.data.tags["registry.model"] for r in runs}):
        try:
            version = int(c.get_model_version_by_alias(name, CHAMPION).version)
        except mlflow.exceptions.MlflowException:  # no champion (yet), or the model is gone
            out.append((name, None, None))
            continue
        out.append((name, version, integrity_problem(c, name, version)))
    return out


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
    param: list[str] = typer.Option(list(PARAMS), "--param", help="A params.yaml key (dotted) to show; "
                                    "repeat for several."),
    metric: list[str] = typer.Option(list(METRICS), "--metric", help="A metric to show; repeat for several. "
                                     "Rows are ordered by fid_ratio, lowest first."),
    max_runs: int = typer.Option(50, min=1, help="Show at most this many runs."),
    all_runs: bool = typer.Option(False, "--all", help="Also list KILLED and FAILED runs (interrupted or "
                                  "crashed trainings), which are left out of the ranking by default."),
    exp_prefix: str = typer.Option(None, help="Only the runs of DVC experiments whose name starts with this "
                                   "(e.g. sweep-<run id>- for one CI sweep, .github/workflows/sweep.yml)."),
) -> None:
    """Print a table of an experiment's runs with their status, key params and metrics, best fid_ratio
    first."""
    with user_errors():
        from ganforge.tracking.store import tracking_uri

        if experiment is None and run_json.exists():
            experiment = experiment_of(run_json)
        df = compare_runs(experiment, params=param, metrics=metric, max_results=max_runs, all_runs=all_runs,
                          exp_prefix=exp_prefix)
        shown = "all runs" if all_runs else "KILLED/FAILED left out (--all shows them)"
        table = Table(title=f"{experiment}: {len(df)} run(s), best fid_ratio first, {shown} "
                      f"({tracking_uri()})")
        for col in df.columns:
            table.add_column(col, justify="left" if col in ("run_id", "run_name", "status") else "right",
                             no_wrap=col == "run_id")
        for row in df.itertuples(index=False):
            table.add_row(*(_cell(v) for v in row))
        Console(width=200).print(table)
        if experiment is None:
            return
        bad = []
        for name, version, problem in champion_checks(experiment):
            if version is None:
                print(f"{name}: no champion")
            elif problem is None:
                print(f"champion of {name}: version {version}, files verified (sha256 as registered)")
            else:
                bad.append(f"champion {problem}")
        if bad:
            raise GanforgeError("; ".join(bad) + " (the next version evaluate judges replaces it)")


if __name__ == "__main__":
    app()
