"""Metrics of a class-conditional generator: is the image of class k a k, and does it look like the real k's?

conditional accuracy: the share of generated images that the judge (metrics/evaluator.py) classifies as the
    class they were asked to be.
intra-class FID: for each class k, the FID between the generated images asked to be k and the real test
    images labelled k, in the judge's features (the same fid functions as the unconditional FID); reported
    per class and as the mean over classes (Miyato & Koyama 2018 report it on ImageNet).
"""

from __future__ import annotations

import numpy as np

from ganforge.errors import GanforgeError
from ganforge.metrics.evaluator import FeatureSet
from ganforge.metrics.fid import feature_stats, fid_from_stats


def conditional_metrics(generated: FeatureSet, labels: np.ndarray, real: FeatureSet, real_labels: np.ndarray,
                        ) -> tuple[dict, list[dict]]:
    """generated: features/probs of the samples, labels int [M] the classes they were asked for;
    real: the reference (the test split's features, in the split's order), real_labels int [N] its labels.
    Returns ({cond_accuracy, intra_fid, intra_fid_max, classes_measured}, one row per class asked for:
    class, n, accuracy, fid)."""
    labels, real_labels = np.asarray(labels), np.asarray(real_labels)
    if len(labels) != len(generated.features) or len(real_labels) != len(real.features):
        raise GanforgeError(f"labels do not match the features: {len(labels)} labels for "
                            f"{len(generated.features)} samples, {len(real_labels)} for {len(real.features)} "
                            "real images (rerun the stale stage: dvc repro)")
    predicted = generated.probs.argmax(axis=1)  # [M]
    rows = []
    for k in np.unique(labels):
        mine, theirs = labels == k, real_labels == k
        fid = (fid_from_stats(*feature_stats(real.features[theirs]), *feature_stats(generated.features[mine]))
               if mine.sum() >= 2 and theirs.sum() >= 2 else float("nan"))  # FID needs 2 images a side
        rows.append({"class": int(k), "n": int(mine.sum()), "accuracy": float((predicted[mine] == k).mean()),
                     "fid": fid})
    fids = np.array([r["fid"] for r in rows])
    return {"cond_accuracy": float((predicted == labels).mean()),
            "intra_fid": float(np.nanmean(fids)) if np.isfinite(fids).any() else float("nan"),
            "intra_fid_max": float(np.nanmax(fids)) if np.isfinite(fids).any() else float("nan"),
            "classes_measured": len(rows)}, rows
