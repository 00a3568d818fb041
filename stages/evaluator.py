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
    evaluate.n images against the test split: the best score a generator could hope for. The dataset's
    judge (ganforge.judges) says what is built: for the toy 2-D data sets (ring8, grid25: judge modes) the
    mode table, so MODEL holds the mode centres and std, reference.npz the test split's mode histogram and
    metrics.json the mode metrics of evaluate.n real points; for Stacked MNIST (judge stacked) the CNN
    trained on the unstacked digits, with the mode histogram and metrics over its 1000 modes."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "evaluator", "evaluate")
        cfg = p.evaluator
        device = resolve_device(cfg.device)

        from ganforge.data.prepared import load_info, load_split
        from ganforge.io import atomic_save_npz, atomic_write_json
        from ganforge.judges import judge_for
        from ganforge.metrics import Settings, build_evaluator, save_evaluator
        from ganforge.metrics.modes import describe, mode_judge
        from ganforge.metrics.stacked import stacked_judge

        t0 = time.perf_counter()
        info = load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        x_train, y_train = load_split(data, "train")
        x_test, y_test = load_split(data, "test")
        judge = judge_for(p.base.dataset, cfg.kind, len(info["classes"]))
        judge.check(x_train, str(data / "train.npz"))
        if judge.name == "modes":  # no CNN to train: the mode centres and std of info.json judge the points
            table, metrics, test_hist = mode_judge(info, x_train, x_test, p.evaluate.n,
                                                   p.evaluate.modes.min_count)
            table.save(model)
            atomic_save_npz(results / "reference.npz", mode_hist=test_hist)
            atomic_write_json(results / "metrics.json", metrics)
            floor = metrics["floor"]
            print(f"evaluator: mode table of {p.base.dataset} (std {table.std:g}) -> {model}\n  real floor "
                  f"({p.evaluate.n} train points): {describe(floor)}")
            return
        if judge.name == "stacked":  # the MNIST judge reads each channel: mode counting only
            net, metrics, test_hist = stacked_judge(
                x_train, y_train, x_test, y_test, feature_dim=cfg.feature_dim, epochs=cfg.epochs,
                batch_size=cfg.batch_size, lr=cfg.lr, seed=p.base.seed, device=device,
                floor_n=p.evaluate.n, min_count=p.evaluate.modes.min_count, progress=sys.stderr.isatty())
            save_evaluator(model, net, meta={"seed": p.base.seed, "accuracy": metrics["accuracy"],
                                             **cfg.model_dump(exclude={"device"})})
            atomic_save_npz(results / "reference.npz", mode_hist=test_hist)
            atomic_write_json(results / "metrics.json", metrics)
            print(f"evaluator: MNIST judge of the unstacked digits, accuracy {metrics['accuracy']:.4f}, "
                  f"test mode accuracy {metrics['test_mode_accuracy']:.4f} ({device}, "
                  f"{time.perf_counter() - t0:.0f} s)\n  real floor ({p.evaluate.n} train images): "
                  f"{describe(metrics['floor'])}")
            return
        settings = Settings.of(p.evaluate, seed=p.base.seed, device=device)
        result = build_evaluator(x_train, y_train, x_test, y_test, kind=judge.name, cfg=cfg,
                                 floor_n=p.evaluate.n, settings=settings,
                                 device=device, progress=sys.stderr.isatty(),
                                 log=lambda line: print(f"floor {line}", flush=True))
        save_evaluator(model, result.net, meta={"seed": p.base.seed, "accuracy": result.metrics["accuracy"],
                                                **cfg.model_dump(exclude={"device"}), "kind": judge.name})
        result.reference.save(results / "reference.npz")
        atomic_write_json(results / "metrics.json", result.metrics)
        floor = result.metrics["floor"]
        acc = result.metrics["accuracy"]
        print(f"evaluator: {judge.name}" + (f", test accuracy {acc:.4f}" if acc is not None else "")
              + f" on {len(x_test)} test images ({device}, {time.perf_counter() - t0:.0f} s); floor fid "
              f"{floor['fid']:.4g}, precision {floor['precision']:.3f}, recall {floor['recall']:.3f} "
              f"({p.evaluate.n} real train images)")


if __name__ == "__main__":
    app()
