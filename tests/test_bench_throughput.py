"""bench/throughput.py as a user runs it: a smoke test on real (tiny) MNIST on the CPU. No timing asserts."""

import json
import shutil
import subprocess
import sys

import torch

from conftest import ROOT, set_params


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_throughput_runs_both_loops_and_writes_its_json(tiny_mnist_dir, tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    set_params(params, {"train.z_dim": 16, "train.g_channels": 8, "train.d_channels": 8,
                        "train.batch_size": 32, "train.log_every": 5})
    out = tmp_path / "throughput.json"
    proc = bench("--params", str(params), "--data", str(tiny_mnist_dir), "--device", "cpu",
                 "--steps", "5", "--warmup", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    for part in ("project", "reference"):
        assert report[part]["steps"] == 5 and report[part]["seconds"] > 0
        assert report[part]["img_per_s"] == 5 * 32 / report[part]["seconds"]
        assert report[part]["img_per_cpu_s"] == 5 * 32 / report[part]["cpu_seconds"]
    assert report["ratio"] == report["project"]["img_per_s"] / report["reference"]["img_per_s"]
    assert report["round_ratios"] == [report["ratio"]] == [report["ratio_median_of_rounds"]]  # one round
    assert report["device"] == "cpu" and report["fast"] == "auto" and report["batch_size"] == 32
    assert report["machine"]["torch"] == torch.__version__ and report["n_train"] == 2048
    assert report["fast_path_log"] == []  # on the CPU the fast path neither captures nor fails
    assert "--steps 5" in report["command"]
    assert "ratio" in proc.stdout and str(out) in proc.stdout


def test_without_prepared_data_it_says_how_to_get_it(tmp_path):
    proc = bench("--data", str(tmp_path / "nowhere"), "--device", "cpu", "--out", str(tmp_path / "t.json"))
    assert proc.returncode == 1
    assert "no prepared data in" in proc.stderr and "dvc repro download" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.json").exists()
