"""Print the generated metrics beside the real-data floor: `python -m ganforge.report [PROJECT_DIR]`.

Reads results/evaluate/metrics.json (the generator) and results/evaluator/metrics.json (the evaluator's
accuracy and the floor: real train images scored exactly like generated ones).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ganforge.errors import GanforgeError
from ganforge.io import read_json

# (key, which way is better); fid_ratio is 1 for the floor by definition
ROWS = (
    ("fid_ratio", "lower (1 = real)"),  # FID / floor FID: reads the same whichever judge was trained
    ("fid", "lower"),
    ("kid_mean", "lower"),  # shown with ± its std over the subsets
    ("precision", "higher"),  # share of samples on the real manifold: fidelity
    ("recall", "higher"),  # share of the real manifold the samples reach: diversity
    ("density", "higher (~1)"),
    ("coverage", "higher"),
    ("classifier_score", "higher"),  # the Inception Score with the judge as classifier
    ("class_kl", "lower"),  # KL(generated class histogram || real)
    ("classes_covered", "higher"),
    ("inception_fid", "lower"),
    ("n", ""),  # images scored against the real test split
)


def _read(path: Path) -> dict:
    return read_json(path, "run the pipeline first (make run, or dvc repro)")


def _fmt(key: str, metrics: dict) -> str:
    if key not in metrics:
        return "-"
    v = metrics[key]
    if key == "kid_mean" and "kid_std" in metrics:
        return f"{v:.4g} ± {metrics['kid_std']:.2g}"
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def table(generated: dict, evaluator: dict) -> Table:
    floor = {**evaluator.get("floor", {}), "fid_ratio": 1.0}
    t = Table(title="generated samples vs the real-data floor",
              caption=f"evaluator test accuracy {evaluator.get('accuracy', float('nan')):.2%}; floor = "
                      f"{floor.get('n', '?')} real train images scored like the samples")
    for col, justify in (("metric", "left"), ("generated", "right"), ("real floor", "right"),
                         ("better", "left")):
        t.add_column(col, justify=justify)
    for key, better in ROWS:
        if key in generated or key in floor:
            t.add_row(key, _fmt(key, generated), _fmt(key, floor), better)
    return t


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    root = Path(args[0]) if args else Path(".")
    try:
        generated = _read(root / "results/evaluate/metrics.json")
        evaluator = _read(root / "results/evaluator/metrics.json")
    except GanforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    Console().print(table(generated, evaluator))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
