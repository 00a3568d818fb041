"""A generator as a labelled data source: its images in the prepared format of the download stage.

data/synthetic-<dataset>/{train,test}.npz + info.json (data/prepared.py), so any later stage, test or
downstream tool reads them with load_split / load_info like real data. Image i of the train split comes
from seed `seed + i`, image i of the test split from `seed + train_n + i` (sampling's one seed per image).
Labels: a conditional generator's images are asked for every class in turn (sampling.class_cycle), and
labelled with the class asked for; an unconditional generator takes no class, so its images are labelled
with the judge's prediction (info.json says which: labels "requested" or "judge").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ganforge.data.prepared import Split
from ganforge.metrics.evaluator import extract
from ganforge.sampling import class_cycle, class_names, generate


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def synthesize(G: torch.nn.Module, meta: dict, *, counts: dict[str, int], seed: int, batch_size: int,
               device: torch.device | str, judge=None, classes: list[str] | None = None,
               ) -> tuple[dict[str, Split], dict]:
    """({split: (uint8 images, int64 labels)}, info.json fields) for counts {"train": n, "test": m}.

    judge: the evaluator (labels an unconditional G's images; unused for a conditional one);
    classes: the real data's class names (an unconditional G has none of its own)."""
    conditional = bool(G.num_classes)
    names = class_names(G, meta) if conditional else list(classes or [])
    splits, seeds, start = {}, {}, seed
    for split, n in counts.items():
        labels = class_cycle(n, range(len(names))) if conditional else None
        images = generate(G, n, seed=start, batch_size=batch_size, device=device, labels=labels)
        if not conditional:
            labels = extract(judge, images, torch.device(device)).probs.argmax(axis=1).astype(np.int64)
        splits[split] = (images, np.asarray(labels, dtype=np.int64))
        seeds[split] = {"first": start, "count": n}
        start += n
    info = {"classes": names, "seeds": seeds, "labels": "requested" if conditional else "judge"}
    return splits, info
