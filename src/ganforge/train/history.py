"""results/train/losses.tsv: the loop's reports as a table (a DVC plot against step)."""

from __future__ import annotations


def history_tsv(history: list[dict]) -> str:
    """One row per report, columns in the order the loop reports them (step, kimg, the loss's stats...).

    The columns are those of the rows themselves: each loss reports its own stats (hinge has no
    probabilities, a penalty has its own value), so there is no fixed list to keep in step with the losses.
    """
    columns = list(dict.fromkeys(k for row in history for k in row))
    lines = ["\t".join(columns)]
    for row in history:
        lines.append("\t".join(f"{row[c]:.6g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                               for c in columns))
    return "\n".join(lines) + "\n"
