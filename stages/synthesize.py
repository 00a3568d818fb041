"""DVC stage `synthesize`: the generator as a labelled dataset, and the Classification Accuracy Score."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset, the "
                                "synthesize section and the evaluator section (the CAS classifier)"),
    data: Path = typer.Option(..., help="the real prepared data directory (download stage): class names, the "
                              "real test split CAS is measured on, the real train split of the mix"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the trained generator"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge: labels an unconditional "
                                   "generator's images"),
    evaluator_results: Path = typer.Option(Path("results/evaluator"), help="its metrics.json: the accuracy "
                                           "of the same classifier trained on real data"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(CAS is logged there)"),
    out: Path | None = typer.Option(None, help="the synthetic dataset directory [default: "
                                    "data/synthetic-<base.dataset>]"),
    results: Path = typer.Option(Path("results/synthesize"), help="directory for metrics.json (CAS)"),
) -> None:
    """Write OUT/{train,test}.npz + info.json (the download stage's prepared format; info.json names the
    generator file's sha256 and the seeds) from synthesize.train_n + synthesize.test_n generated images,
    labelled with the class each was asked to be (an unconditional generator: the judge's prediction).
    Then CAS: the judge's classifier architecture trained from scratch on the synthetic train split only,
    tested on the real test split, beside the same classifier trained on real data and (synthesize.mix) on
    real + synthetic. Writes RESULTS/metrics.json and logs it to the training's MLflow run."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "evaluator", "synthesize")
        from ganforge.errors import ConfigError
        from ganforge.judges import judge_for

        judge = judge_for(p.base.dataset)
        if judge.counts_modes:  # no CNN judge of its classes: CAS is not defined there
            raise ConfigError(f"base.dataset: {p.base.dataset} is a mode-collapse benchmark ({judge.what}), "
                              "which the synthesize stage (CAS, a classifier of image classes) does not "
                              "apply to: run `dvc repro evaluate` (make run) or `dvc exp run ... evaluate`")
        cfg = p.synthesize
        device = resolve_device(cfg.device)
        out = out or Path("data") / f"synthetic-{p.base.dataset}"

        from ganforge.data.prepared import load_info, load_split, write_prepared
        from ganforge.io import atomic_write_json
        from ganforge.metrics import load_evaluator, load_evaluator_metrics
        from ganforge.metrics.cas import classification_accuracy_score
        from ganforge.nets import load_generator
        from ganforge.synthetic import file_sha256, synthesize

        real_info = load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        if judge_for(p.base.dataset, p.evaluator.kind, len(real_info["classes"])).name != "classifier":
            raise ConfigError(f"CAS trains a classifier of the data's classes, but {p.base.dataset} is "
                              f"judged without labels (evaluator.kind: {p.evaluator.kind}, "
                              f"{len(real_info['classes'])} class(es)): the synthesize stage needs labelled "
                              "data and evaluator.kind auto or classifier")
        G, meta = load_generator(model, device)
        judge_accuracy = load_evaluator_metrics(evaluator_results / "metrics.json")["accuracy"]
        judge = None if G.num_classes else load_evaluator(evaluator, device)[0]
        from ganforge.tracking.store import Run  # mlflow: seconds to import, so after the cheap checks

        run = Run.attach(run_json)
        t0 = time.perf_counter()
        splits, info = synthesize(G, meta, counts={"train": cfg.train_n, "test": cfg.test_n},
                                  seed=p.base.seed + cfg.seed_offset, batch_size=cfg.batch_size,
                                  device=device, judge=judge, classes=real_info.get("classes"))
        info = write_prepared(out, splits, {
            **info, "name": f"synthetic-{p.base.dataset}", "kind": "synthetic",
            "source": f"generator {model} (sha256 {file_sha256(model)})",
            "generator": {"sha256": file_sha256(model), "mlflow_run_id": meta.get("mlflow_run_id"),
                          "trained_kimg": meta.get("trained_kimg")}})
        print(f"synthesize: {cfg.train_n} + {cfg.test_n} images labelled by {info['labels']} class -> {out} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

        classifier = p.evaluator.model_dump(include={"epochs", "batch_size", "lr", "feature_dim"})
        metrics = classification_accuracy_score(
            splits["train"], load_split(data, "train") if cfg.mix else None, load_split(data, "test"),
            real_accuracy=judge_accuracy, num_classes=len(info["classes"]), classifier=classifier,
            seed=p.base.seed, device=device, progress=sys.stderr.isatty(),
            log=lambda line: print(line, flush=True))
        metrics.update(n_synthetic=cfg.train_n, labels=info["labels"])
        atomic_write_json(results / "metrics.json", metrics)
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        run.log_artifact(results / "metrics.json", "synthesize")
        mix = f", real + synthetic {metrics['cas_mix']:.4f}" if "cas_mix" in metrics else ""
        print(f"synthesize: CAS {metrics['cas']:.4f} (synthetic only, real test), real "
              f"{metrics['cas_real']:.4f}{mix} ({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    app()
