"""Print the address that opens the training experiment's runs table in the MLflow UI.

    python scripts/ui_link.py http://127.0.0.1:5001     (make ui and make mlflow-server call it)

MLflow 3 opens an experiment in its GenAI view (traces, prompts); `?workflowType=machine_learning` opens
the model-training view, where a GAN's runs, metrics and images are. Reads MLFLOW_TRACKING_URI, else the
project's store.
"""

from __future__ import annotations

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(base_url: str = typer.Argument(..., help="where the UI listens, e.g. http://127.0.0.1:5001")
         ) -> None:
    """Print the runs-table link of the ganforge experiment (the experiments list when there is none yet)."""
    with user_errors():
        from ganforge.tracking.store import runs_link

        print(f"MLflow UI, training runs: {runs_link(base_url)}", flush=True)


if __name__ == "__main__":
    app()
