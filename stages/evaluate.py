"""DVC stage `evaluate`: measure the generated samples against the real test split in the judge's features."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset, "
                                "the evaluate section and sample.truncation/classes (how the samples were "
                                "drawn: only the standard sample may move the registry's champion)"),
    data: Path = typer.Option(..., help="prepared data directory: the real train images (the memorisation "
                              "check's nearest neighbours) and test images (Inception and intra-class FID)"),
    samples: Path = typer.Option(Path("samples/images.npz"), help="generated images (sample stage)"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the trained evaluator"),
    evaluator_results: Path = typer.Option(Path("results/evaluator"), help="the evaluator stage's results: "
                                           "reference.npz and metrics.json (the real-data floor)"),
    run_json: Path = typer.Option(Path("results/train/run.json"), "--run", help="the training's MLflow run "
                                  "(metrics are logged there)"),
    out: Path = typer.Option(Path("results/evaluate"), help="directory for metrics.json, class_hist.tsv, "
                             "per_class.tsv and closest_pairs.png"),
) -> None:
    """Compute FID, KID, precision/recall, density/coverage, classifier score, class-histogram KL and classes
    covered of the samples against the real test split, fid_ratio = FID / the real-data floor's FID, and
    (evaluate.inception: true) standard Inception FID. Samples of a class-conditional generator (their
    requested labels in images.npz) add conditional accuracy (the judge's prediction is the requested class)
    and intra-class FID (mean over classes, against the real test images of that class), per class in
    OUT/per_class.tsv (a header only for an unconditional generator). Memorisation: each sample's nearest
    train image in the judge's features; copy_share = the share of samples closer to one than all but
    evaluate.copies.quantile of the real test images are, copy_z = Meehan et al.'s data-copying Z (below 0:
    closer than fresh real images), OUT/closest_pairs.png = the 32 closest (sample | train image) pairs; a
    copy_share over evaluate.copies.max_share flags the generator, which then cannot become the registry's
    champion. A label-free judge (evaluator.kind self-supervised) has no class metrics. Writes
    OUT/metrics.json, OUT/class_hist.tsv, OUT/per_class.tsv and OUT/closest_pairs.png and logs everything to
    the training's MLflow run. The dataset's judge (ganforge.judges) says how: 2-D samples of the toy data
    sets (judge modes) are judged by the evaluator stage's mode table instead: modes covered
    (evaluate.modes.min_count samples within 3 std), the high-quality share and the KL of the mode histogram
    from uniform; Stacked MNIST samples (judge stacked) by the modes the MNIST judge reads in their channels
    (1000); class_hist.tsv is then per mode."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device

        p = load_params(params, "base", "evaluate", "sample")
        cfg = p.evaluate
        device = resolve_device(cfg.device)

        from ganforge.data.prepared import load_split
        from ganforge.data.stacked import MODES
        from ganforge.errors import GanforgeError
        from ganforge.io import atomic_write_bytes, read_json
        from ganforge.judges import judge_for
        from ganforge.metrics import (
            Reference,
            Settings,
            evaluate_images,
            extract,
            load_evaluator,
            load_evaluator_metrics,
        )
        from ganforge.metrics.inception import inception_fid, weights_path
        from ganforge.metrics.memorisation import closest_pairs, copies
        from ganforge.metrics.modes import ModeTable, describe, mode_metrics, mode_rows
        from ganforge.metrics.stacked import read_stacked, stacked_features, stacked_metrics
        from ganforge.metrics.suite import float64_device
        from ganforge.sampling import load_samples, png_bytes

        weights = weights_path(cfg.inception_weights) if cfg.inception else None  # fail before any work
        from ganforge.data.prepared import load_info

        load_info(data, p.base.dataset)  # another dataset's directory: exit 2
        judge = judge_for(p.base.dataset)
        from ganforge.tracking.promotion import promote_if_better, sample_variant  # mlflow: seconds
        from ganforge.tracking.store import Run

        run = Run.attach(run_json)
        # metrics of a re-evaluation land on the same keys (MLflow keeps each key's history): the tag says
        # which sample the latest figures measure
        variant = sample_variant(p.sample.truncation, p.sample.classes, p.sample.psi)
        run.set_tags({"evaluate.sample": variant or "standard"})
        t0 = time.perf_counter()
        images, labels = load_samples(samples)  # labels: the requested classes (conditional G), else None
        judge.check(images, str(samples))
        if judge.counts_modes:  # the mode-collapse benchmarks
            if judge.name == "modes":  # toy 2-D data: with the evaluator stage's mode table
                table = ModeTable.load(evaluator)
                modes, n_modes = table.assign(images), len(table.centres)
                metrics = mode_metrics(modes, n_modes, cfg.modes.min_count)
            else:  # Stacked MNIST: the MNIST judge reads each channel
                net = load_evaluator(evaluator, device)[0]
                modes, clear = read_stacked(net, images, device)
                n_modes = MODES
                metrics = stacked_metrics(modes, clear, cfg.modes.min_count)
            floor = read_json(evaluator_results / "metrics.json", "rerun the evaluator stage")["floor"]
            hist = mode_rows(modes, n_modes, evaluator_results / "reference.npz", floor)
            def features(x):  # the points themselves; the MNIST judge's features of the three digits
                return x.reshape(len(x), -1) if judge.name == "modes" else stacked_features(net, x, device)

            x_train, x_test = (load_split(data, s)[0] for s in ("train", "test"))
            found = copies(features(images), features(x_train), features(x_test), cfg.copies.quantile,
                           cfg.copies.max_share, float64_device(device))
            metrics.update(found.metrics)
            _write(out, metrics, hist, [])
            atomic_write_bytes(out / "closest_pairs.png", png_bytes(closest_pairs(images, x_train, found)))
            run.log_metrics({**metrics, **{f"floor.{k}": v for k, v in floor.items()}})
            for f in ("metrics.json", "class_hist.tsv", "per_class.tsv", "closest_pairs.png"):
                run.log_artifact(out / f, "evaluate")
            run.set_tags({"registry.decision": "not judged (mode counting: no fid_ratio to compare)"})
            print(f"evaluate: {describe(metrics)}; copies {metrics['copy_share']:.2%}\n  real floor: "
                  f"{describe(floor)}")
            return
        net, _ = load_evaluator(evaluator, device)
        ref = Reference.load(evaluator_results / "reference.npz")
        judge = load_evaluator_metrics(evaluator_results / "metrics.json")  # accuracy, floor
        floor = judge["floor"]
        if floor["n"] != len(images):
            raise GanforgeError(f"{samples} holds {len(images)} images but the real-data floor was measured "
                                f"with {floor['n']}: FID depends on sample size, so rerun the stale stage "
                                "(dvc repro)")
        settings = Settings.of(cfg, seed=p.base.seed, device=device)

        need_test = labels is not None or weights is not None  # intra-class FID, Inception FID
        x_test, y_test = load_split(data, "test") if need_test else (None, None)
        fs = extract(net, images, device)
        metrics, hist, per_class = evaluate_images(images, net, ref, floor, settings, log=print,
                                                   labels=labels, real_labels=y_test, fs=fs)
        if weights is not None:
            metrics.update(inception_fid(x_test, images, weights, device))
        t1 = time.perf_counter()
        x_train, _ = load_split(data, "train")
        found = copies(fs.features, extract(net, x_train, device).features, ref.features,
                       cfg.copies.quantile, cfg.copies.max_share, float64_device(device))
        metrics.update(found.metrics)
        print(f"copies: {time.perf_counter() - t1:.1f} s")
        seconds = time.perf_counter() - t0

        _write(out, metrics, hist, per_class)
        atomic_write_bytes(out / "closest_pairs.png", png_bytes(closest_pairs(images, x_train, found)))
        run.log_metrics({**metrics, **{f"floor.{k}": v for k, v in floor.items()},
                         **({"evaluator.accuracy": judge["accuracy"]} if judge["accuracy"] is not None
                            else {})})
        for f in ("metrics.json", "class_hist.tsv", "per_class.tsv", "closest_pairs.png"):
            run.log_artifact(out / f, "evaluate")
        if metrics["copies_flagged"]:  # a generator that replays its training set is not a champion
            decision = {"registry.decision": f"not judged (memorisation: {metrics['copy_share']:.1%} of the "
                                             f"samples are copies, over evaluate.copies.max_share)"}
            run.set_tags(decision)
        else:
            decision = promote_if_better(run, p.base.dataset, None, metrics["fid_ratio"], variant=variant)
        classes = (f", {metrics['classes_covered']} classes covered" if "classes_covered" in metrics
                   else "")
        print(f"evaluate: {len(images)} samples in {seconds:.0f} s ({device}): fid {metrics['fid']:.4g} "
              f"(ratio {metrics['fid_ratio']:.3g}), precision {metrics['precision']:.3f}, recall "
              f"{metrics['recall']:.3f}{classes}; copies {metrics['copy_share']:.2%} (real test images: "
              f"{cfg.copies.quantile:.0%} by construction; Meehan Z {metrics['copy_z']:.1f})"
              + (" FLAGGED: the generator replays its training images" if metrics["copies_flagged"] else "")
              + f"; registry: {decision['registry.decision']}")
        if labels is not None:
            print(f"conditional: accuracy {metrics['cond_accuracy']:.4f} (the judge's class = the requested "
                  f"one), intra-class FID {metrics['intra_fid']:.4g} (mean over "
                  f"{metrics['classes_measured']} classes, worst {metrics['intra_fid_max']:.4g})")


def _write(out: Path, metrics: dict, hist: list, per_class: list[dict]) -> None:
    """OUT/metrics.json, OUT/class_hist.tsv (class or mode, real share, generated share) and
    OUT/per_class.tsv (a conditional generator's accuracy and FID per class; else a header only)."""
    from ganforge.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "class_hist.tsv", "class\treal\tgenerated\n" + "".join(
        f"{k}\t{real:.6f}\t{gen:.6f}\n" for k, real, gen in hist))
    atomic_write_text(out / "per_class.tsv", "class\tn\taccuracy\tfid\n" + "".join(
        f"{r['class']}\t{r['n']}\t{r['accuracy']:.6f}\t{r['fid']:.6f}\n" for r in per_class))


if __name__ == "__main__":
    app()
