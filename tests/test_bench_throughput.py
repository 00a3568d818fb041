"""bench/throughput.py as a user runs it: a smoke test on real (tiny) MNIST on the CPU. No timing asserts."""

import json
import os
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ONE_THREAD, ROOT, copy_params, set_params

pytestmark = pytest.mark.slow  # benchmark runs


def bench(*args: str, cpu_bf16: str = "0") -> subprocess.CompletedProcess:
    """cpu_bf16: GANFORGE_CPU_BF16, so that the report does not depend on which CPU runs the test."""
    env = {**os.environ, **ONE_THREAD, "GANFORGE_CPU_BF16": cpu_bf16}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


def tiny_params(tmp_path):
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"train.z_dim": 16, "train.g_channels": 8, "train.d_channels": 8,
                        "train.batch_size": 32, "train.log_every": 5})
    return params


def test_throughput_runs_both_loops_and_writes_its_json(tiny_mnist_dir, tmp_path):
    out = tmp_path / "throughput.json"
    proc = bench("--params", str(tiny_params(tmp_path)), "--data", str(tiny_mnist_dir), "--device", "cpu",
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
    assert report["loss"] == "ns" and report["log_every"] == 5  # the params' train section (copy_params)
    assert report["machine"]["torch"] == torch.__version__ and report["n_train"] == 2048
    # a CPU without native bf16: fast: auto trains in fp32 and the run says so once
    assert report["fast_path_log"] == ["train.fast: auto: this CPU has no native bf16 (avx512_bf16 or AMX); "
                                       "training in fp32"]
    assert report["machine"]["cpu_bf16"] is False and report["machine"]["torch_threads"] == 1
    assert "project_fast_off" not in report  # only with --vs-off
    assert "--steps 5" in report["command"]
    assert "ratio" in proc.stdout and str(out) in proc.stdout


def test_vs_off_times_the_fast_path_against_plain_fp32_in_every_round(tiny_mnist_dir, tmp_path):
    out = tmp_path / "throughput.json"
    proc = bench("--params", str(tiny_params(tmp_path)), "--data", str(tiny_mnist_dir), "--device", "cpu",
                 "--steps", "5", "--warmup", "2", "--rounds", "2", "--vs-off", "--out", str(out),
                 cpu_bf16="1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_bf16"] is True and report["fast_path_log"] == []  # bf16, no fallback
    off = report["project_fast_off"]
    assert off["steps"] == 10 and [r["steps"] for r in off["rounds"]] == [5, 5]
    pairs = zip(report["project"]["rounds"], off["rounds"], strict=True)
    assert report["fast_over_off_round_ratios"] == [a["img_per_s"] / b["img_per_s"] for a, b in pairs]
    assert report["fast_over_off_median_of_rounds"] == statistics.median(report["fast_over_off_round_ratios"])
    assert "fast/off" in proc.stdout


def test_without_prepared_data_it_says_how_to_get_it(tmp_path):
    proc = bench("--data", str(tmp_path / "nowhere"), "--device", "cpu", "--out", str(tmp_path / "t.json"))
    assert proc.returncode == 1
    assert "no prepared data in" in proc.stderr and "dvc repro download" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.json").exists()
