"""DVC stage `evaluator`: train the domain judge, cache the test split's features, measure the real floor."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, the evaluator "
                                "section and the metric settings of the evaluate section"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option(Path("models/evaluator.pt"), help="where to write the trained evaluator"),
    results: Path = typer.Option(Path("results/evaluator"), help="directory for reference.npz (features of "
                                 "the real test split) and metrics.json (accuracy, real-data floor)"),
) -> None:
    """Train a small CNN classifier on the real training split (deterministic with base.seed), write its
    test accuracy, the features of the real test split, and every metric of a real train subset of
    evaluator.floor_n images against the test split: the best score a generator could hope for."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.io import resolve_device

        p = load_params(params)
        e = p.evaluator
        device = resolve_device(e.device)

        from ganforge.data.prepared import load_split
        from ganforge.io import atomic_write_json
        from ganforge.metrics import Settings, build_evaluator, save_evaluator

        t0 = time.perf_counter()
        x_train, y_train = load_split(data, "train")
        x_test, y_test = load_split(data, "test")
        settings = Settings(kid_subsets=p.evaluate.kid_subsets, kid_subset_size=p.evaluate.kid_subset_size,
                            pr_k=p.evaluate.pr_k, dc_k=p.evaluate.dc_k, seed=p.base.seed, device=device)
        result = build_evaluator(x_train, y_train, x_test, y_test, epochs=e.epochs, batch_size=e.batch_size,
                                 lr=e.lr, feature_dim=e.feature_dim, floor_n=e.floor_n, settings=settings,
                                 device=device, progress=sys.stderr.isatty(),
                                 log=lambda line: print(f"floor {line}", flush=True))
        save_evaluator(model, result.net, meta={"seed": p.base.seed, "accuracy": result.metrics["accuracy"],
                                                **e.model_dump(exclude={"device"})})
        result.reference.save(results / "reference.npz")
        atomic_write_json(results / "metrics.json", result.metrics)
        floor = result.metrics["floor"]
        print(f"evaluator: test accuracy {result.metrics['accuracy']:.4f} on {len(x_test)} images ({device}, "
              f"{time.perf_counter() - t0:.0f} s); floor fid {floor['fid']:.4g}, precision "
              f"{floor['precision']:.3f}, recall {floor['recall']:.3f} ({e.floor_n} real train images)")


if __name__ == "__main__":
    app()
