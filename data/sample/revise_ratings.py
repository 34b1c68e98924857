"""Writes a refreshed copy of the sample: the human ratings of its first N dialogues revised (3 <-> not 3).

What a team's data looks like after a new annotation pass: the same dialogues, some
ratings changed. `make demo-retrain` trains on it with `empathy-distill retrain`: the data
hash differs from the champion's, so a new version is trained, judged against the
champion and the gate decides. Which way it goes is measured, not arranged.

    python data/sample/revise_ratings.py data/sample/dialogues.csv .cache/refreshed.csv [N]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def revise(src: Path, dst: Path, n: int = 8) -> Path:
    with Path(src).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows[:n]:
        row["rating_human"] = "2" if row["rating_human"] == "3" else "3"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


if __name__ == "__main__":
    print(revise(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 8))
