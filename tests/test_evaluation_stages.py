"""The evaluator and evaluate stages through their real CLIs on real MNIST and a real MLflow store."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient

from conftest import copy_params, run_stage, set_params, untrained_generator
from ganforge.io import atomic_save_npz
from ganforge.metrics import Reference, load_evaluator
from ganforge.metrics.evaluator import train_evaluator
from ganforge.nets import save_generator
from ganforge.sampling import generate

pytestmark = pytest.mark.slow  # trains the judge and runs the stages as subprocesses (minutes)

TINY = {"evaluator.device": "cpu", "evaluator.epochs": 3, "evaluator.batch_size": 128,
        "evaluate.n": 400, "evaluate.device": "cpu", "evaluate.kid_subsets": 10,
        "evaluate.kid_subset_size": 100}
METRIC_KEYS = {"n", "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
               "classifier_score", "class_kl", "classes_covered"}
COPY_KEYS = {"copy_share", "copy_z", "copies_flagged", "copy_threshold"}  # the memorisation check


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_mnist_dir) -> tuple:
    """The evaluator stage's outputs, an untrained generator's 400 samples and an MLflow run: all that
    the evaluate stage reads."""
    from ganforge.tracking.store import Run

    cwd = tmp_path_factory.mktemp("evaluation")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", TINY)
    proc = run_stage("evaluator", "--data", str(tiny_mnist_dir), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    G = untrained_generator(0)
    save_generator(cwd / "models/generator.pt", G)
    atomic_save_npz(cwd / "samples/images.npz", images=generate(G, 400, seed=0, batch_size=200))
    run = Run.start("test-evaluate", {"train": {"kimg": 0}}, tags={"dataset": "mnist"}, root=cwd)
    run.write_json(cwd / "results/train/run.json")
    run.finish()
    return cwd, env, run.run_id, proc.stdout


def test_evaluator_outputs(project):
    cwd, _, _, stdout = project
    metrics = json.loads((cwd / "results/evaluator/metrics.json").read_text())
    assert metrics["accuracy"] > 0.85 and metrics["test_n"] == 512  # 3 short epochs on 2048 images
    floor = metrics["floor"]
    assert set(floor) == METRIC_KEYS and floor["n"] == 400
    # real train images against real test images: close to the best values each metric can take
    assert floor["classes_covered"] == 10 and floor["precision"] > 0.6 and floor["coverage"] > 0.6
    ref = Reference.load(cwd / "results/evaluator/reference.npz")
    assert ref.features.shape == (512, 128) and ref.probs.shape == (512, 10) and ref.sigma.shape == (128, 128)
    net, meta = load_evaluator(cwd / "models/evaluator.pt")
    assert meta["accuracy"] == metrics["accuracy"] and net.feature_dim == 128
    assert "test accuracy" in stdout


def test_evaluator_training_is_deterministic_with_the_seed(tiny_mnist_dir, one_thread):
    from ganforge.data.prepared import load_split

    x, y = load_split(tiny_mnist_dir, "train")
    x, y = x[:512], y[:512]
    kw = dict(num_classes=10, feature_dim=32, epochs=1, batch_size=64, lr=3e-3, device=torch.device("cpu"),
              progress=False)
    a, b, c = (train_evaluator(x, y, seed=s, **kw).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.fixture(scope="module")
def evaluated(project, tiny_mnist_dir):
    cwd, env, _, _ = project
    proc = run_stage("evaluate", "--data", str(tiny_mnist_dir), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return project


def test_evaluate_stage(evaluated):
    cwd, env, run_id, _ = evaluated
    metrics = json.loads((cwd / "results/evaluate/metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS | COPY_KEYS | {"fid_ratio"} and metrics["n"] == 400
    floor = json.loads((cwd / "results/evaluator/metrics.json").read_text())["floor"]
    assert metrics["fid_ratio"] == pytest.approx(metrics["fid"] / floor["fid"])
    # an untrained generator draws near-identical grey images: far from the data, no diversity. (Precision
    # can still be high: a few outlying real images have k-NN balls wide enough to hold them, the
    # weakness of precision that density and coverage were made for.)
    assert metrics["fid_ratio"] > 5 and metrics["recall"] < 0.05 and metrics["coverage"] < 0.05
    assert metrics["kid_mean"] > 3 * metrics["kid_std"] and metrics["classes_covered"] < 10
    rows = [line.split("\t") for line in (cwd / "results/evaluate/class_hist.tsv").read_text().splitlines()]
    assert rows[0] == ["class", "real", "generated"]
    assert [r[0] for r in rows[1:]] == [str(k) for k in range(10)]
    for col in (1, 2):
        assert sum(float(r[col]) for r in rows[1:]) == pytest.approx(1, abs=1e-5)
    # everything lands in the training's MLflow run
    c = MlflowClient(env["MLFLOW_TRACKING_URI"])
    logged = c.get_run(run_id).data
    assert {k: logged.metrics[k] for k in metrics} == pytest.approx(metrics)
    assert logged.metrics["floor.fid"] == pytest.approx(floor["fid"])
    assert "evaluator.accuracy" in logged.metrics
    assert {a.path for a in c.list_artifacts(run_id, "evaluate")} == {
        "evaluate/metrics.json", "evaluate/class_hist.tsv", "evaluate/per_class.tsv",
        "evaluate/closest_pairs.png"}
    # an untrained generator copies nothing: its grey images are far from every train image
    assert metrics["copy_share"] == 0 and metrics["copies_flagged"] == 0 and metrics["copy_z"] > 0
    # an unconditional generator: no conditional metrics, a per-class table with its header only
    assert (cwd / "results/evaluate/per_class.tsv").read_text() == "class\tn\taccuracy\tfid\n"
    assert logged.tags["registry.decision"] == "unregistered"  # this run registered no model version
    assert logged.tags["evaluate.sample"] == "standard"


def test_conditional_metrics_of_labelled_samples(project, tiny_mnist_dir, tmp_path):
    """Real test images as the 'samples' of a perfect conditional generator: conditional accuracy is the
    judge's accuracy; with the labels shuffled (a generator that ignores the class) it falls to chance and
    intra-class FID rises."""
    import numpy as np

    from ganforge.data.prepared import load_split

    cwd, env, _, _ = project
    x, y = load_split(tiny_mnist_dir, "test")
    shuffled = np.random.default_rng(0).permutation(y[:400])
    out = {}
    for name, labels in (("true", y[:400]), ("shuffled", shuffled)):
        atomic_save_npz(tmp_path / name / "images.npz", images=x[:400], labels=labels)
        proc = run_stage("evaluate", "--data", str(tiny_mnist_dir), "--samples",
                         str(tmp_path / name / "images.npz"), "--out", str(tmp_path / name / "out"), cwd=cwd,
                         env=env)
        assert proc.returncode == 0, proc.stderr
        out[name] = json.loads((tmp_path / name / "out/metrics.json").read_text())
        rows = (tmp_path / name / "out/per_class.tsv").read_text().splitlines()
        assert rows[0] == "class\tn\taccuracy\tfid" and len(rows) == 11
        assert sum(int(r.split("\t")[1]) for r in rows[1:]) == 400
    assert out["true"]["cond_accuracy"] > 0.85 and out["shuffled"]["cond_accuracy"] < 0.3
    assert out["true"]["intra_fid"] < out["shuffled"]["intra_fid"] / 2
    assert out["true"]["classes_measured"] == 10 and "conditional: accuracy" in proc.stdout


def test_in_training_evaluation_gives_the_evaluate_stages_numbers_for_the_same_images(evaluated):
    from ganforge.config import load_params
    from ganforge.metrics import Settings, in_training_evaluation
    from ganforge.nets import load_generator

    cwd, _, _, _ = evaluated
    p = load_params(cwd / "params.yaml", "base", "evaluate")
    net, _ = load_evaluator(cwd / "models/evaluator.pt")
    ref = Reference.load(cwd / "results/evaluator/reference.npz")
    evaluate = in_training_evaluation(net, ref, Settings.of(p.evaluate, seed=p.base.seed, device="cpu"),
                                      seed=p.base.seed)
    G, _ = load_generator(cwd / "models/generator.pt")
    during = evaluate(G, 400)  # the 400 images the sample fixture drew: seeds 0..399
    after = json.loads((cwd / "results/evaluate/metrics.json").read_text())
    for key in ("fid", "precision", "recall", "density", "coverage"):
        assert during[key] == pytest.approx(after[key], rel=1e-9), key


def test_evaluate_stage_without_inception_weights_says_which_file_goes_where(project, tmp_path):
    from ganforge.metrics.inception import WEIGHTS_FILE

    cwd, env, _, _ = project
    params = tmp_path / "params.yaml"
    params.write_text((cwd / "params.yaml").read_text())
    set_params(params, {"evaluate.inception": True})
    proc = run_stage("evaluate", "--params", str(params), "--data", "unused", "--out", str(tmp_path / "out"),
                     cwd=cwd, env={**env, "TORCH_HOME": str(tmp_path / "torch")})
    expected = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: evaluate.inception is true")
    assert f"{WEIGHTS_FILE} at {expected}" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_floor_larger_than_the_training_split_is_a_config_error(project, tiny_mnist_dir, tmp_path):
    cwd, env, _, _ = project
    params = tmp_path / "params.yaml"
    params.write_text((cwd / "params.yaml").read_text())
    set_params(params, {"evaluate.n": 5000})
    proc = run_stage("evaluator", "--params", str(params), "--data", str(tiny_mnist_dir), "--model",
                     str(tmp_path / "e.pt"), "--results", str(tmp_path / "r"), cwd=cwd, env=env)
    assert proc.returncode == 2 and "evaluate.n (5000)" in proc.stderr
    assert not (tmp_path / "e.pt").exists()


def test_data_of_another_dataset_is_refused_naming_both(project, tiny_mnist_dir, tmp_path):
    cwd, env, _, _ = project
    params = tmp_path / "params.yaml"
    params.write_text((cwd / "params.yaml").read_text())
    set_params(params, {"base.dataset": "fashion-mnist"})
    for stage, extra in (("evaluator", ("--model", str(tmp_path / "e.pt"), "--results", str(tmp_path / "r"))),
                         ("evaluate", ("--out", str(tmp_path / "out")))):
        proc = run_stage(stage, "--params", str(params), "--data", str(tiny_mnist_dir), *extra, cwd=cwd,
                         env=env)
        assert proc.returncode == 2, proc.stderr
        assert "base.dataset is 'fashion-mnist'" in proc.stderr and "holds 'mnist'" in proc.stderr
    assert not (tmp_path / "e.pt").exists() and not (tmp_path / "out").exists()


def test_help_documents_every_option():
    for stage, options in {"evaluator": ("--params", "--data", "--model", "--results"),
                           "sample": ("--params", "--model", "--run", "--out"),
                           "evaluate": ("--params", "--data", "--samples", "--evaluator",
                                        "--evaluator-results", "--run", "--out")}.items():
        proc = run_stage(stage, "--help")
        assert proc.returncode == 0 and all(o in proc.stdout for o in options), stage


def test_report_prints_generated_beside_floor(evaluated, capsys):
    from ganforge.report import main

    cwd, _, _, _ = evaluated
    generated = json.loads((cwd / "results/evaluate/metrics.json").read_text())
    floor = json.loads((cwd / "results/evaluator/metrics.json").read_text())["floor"]
    assert main([str(cwd)]) == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in capsys.readouterr().out.splitlines() if line.count("│") == 5}
    assert rows["fid"] == [f"{generated['fid']:.4g}", f"{floor['fid']:.4g}"]
    assert rows["fid_ratio"] == [f"{generated['fid_ratio']:.4g}", "1"]
    assert rows["classes_covered"] == [str(generated["classes_covered"]), "10"]
    assert main([str(cwd / "nowhere")]) == 1 and "run the pipeline first" in capsys.readouterr().err


def test_a_truncated_sample_is_measured_and_tagged_but_not_judged_for_the_registry(evaluated, tiny_mnist_dir,
                                                                                  tmp_path):
    """Re-evaluating with sample.truncation set: the metrics are logged, the run says which sample they
    measure, and the registry is not consulted (tests/test_registry.py: the champion stays untouched)."""
    cwd, env, run_id, _ = evaluated
    params = tmp_path / "params.yaml"
    params.write_text((cwd / "params.yaml").read_text())
    set_params(params, {"sample.truncation": 1.5, "sample.classes": [7]})
    proc = run_stage("evaluate", "--params", str(params), "--data", str(tiny_mnist_dir), "--out",
                     str(tmp_path / "out"), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "registry: not judged (non-standard sample: truncation 1.5, classes [7]" in proc.stdout
    tags = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id).data.tags
    assert tags["evaluate.sample"] == "truncation 1.5, classes [7]"
    assert tags["registry.decision"].startswith("not judged")
