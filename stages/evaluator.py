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
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset, "
                                "the evaluator section and the evaluate section's n and metric settings"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option(Path("models/evaluator.pt"), help="where to write the trained evaluator"),
    results: Path = typer.Option(Path("results/evaluator"), help="directory for reference.npz (features of "
                                 "the real test split) and metrics.json (accuracy, real-data floor)"),
) -> None:
    """Train a small CNN classifier on the real training split (deterministic with base.seed), write its
    test accuracy, the features of the real test split, and every metric of a real train subset of
    evaluate.n images against the test split: the best score a generator could hope for."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "evaluator", "evaluate")
        cfg = p.evaluator
        device = resolve_device(cfg.device)

        from ganforge.data.prepared import load_info, load_split
        from ganforge.io import atomic_write_json
        from ganforge.metrics import Settings, build_evaluator, save_evaluator

        t0 = time.perf_counter()
        load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        x_train, y_train = load_split(data, "train")
        x_test, y_test = load_split(data, "test")
        settings = Settings.of(p.evaluate, seed=p.base.seed, device=device)
        result = build_evaluator(x_train, y_train, x_test, y_test, epochs=cfg.epochs,
                                 batch_size=cfg.batch_size, lr=cfg.lr, feature_dim=cfg.feature_dim,
                                 floor_n=p.evaluate.n, settings=settings,
                                 device=device, progress=sys.stderr.isatty(),
                                 log=lambda line: print(f"floor {line}", flush=True))
        save_evaluator(model, result.net, meta={"seed": p.base.seed, "accuracy": result.metrics["accuracy"],
                                                **cfg.model_dump(exclude={"device"})})
        result.reference.save(results / "reference.npz")
        atomic_write_json(results / "metrics.json", result.metrics)
        floor = result.metrics["floor"]
        print(f"evaluator: test accuracy {result.metrics['accuracy']:.4f} on {len(x_test)} images ({device}, "
              f"{time.perf_counter() - t0:.0f} s); floor fid {floor['fid']:.4g}, precision "
              f"{floor['precision']:.3f}, recall {floor['recall']:.3f} ({p.evaluate.n} real train images)")


if __name__ == "__main__":
    app()
