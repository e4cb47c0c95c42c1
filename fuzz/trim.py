#!/usr/bin/env python3
"""Keep a fuzz corpus within a size budget: a greedy set cover over the coverage libFuzzer
recorded for each file (a merge control file), taking each time the file that adds the most
new edges per byte, until no file adds any or the budget is spent. Files not chosen are deleted.

    python3 fuzz/trim.py CONTROL_FILE CORPUS_DIR BUDGET_BYTES

Run by `scripts/fuzz.sh cmin` after `cargo fuzz cmin` (whose pass keeps every file that adds a
feature in size order, which for a well-fuzzed target is far more than a committed corpus needs).
"""

import sys
from pathlib import Path


def main():
    control, corpus, budget = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    lines = Path(control).read_text().splitlines()
    n = int(lines[0])
    files = lines[2 : 2 + n]
    cov = {}
    for line in lines[2 + n :]:
        parts = line.split()
        if parts and parts[0] == "COV":
            cov[int(parts[1])] = set(parts[2:])
    size = {i: Path(f).stat().st_size for i, f in enumerate(files) if Path(f).is_file()}
    covered, chosen, spent = set(), [], 0
    while True:
        best, best_score = None, 0.0
        for i, edges in cov.items():
            new = len(edges - covered)
            if new == 0 or i not in size or spent + size[i] > budget:
                continue
            score = new / (size[i] + 64)
            if score > best_score:
                best, best_score = i, score
        if best is None:
            break
        chosen.append(best)
        covered |= cov.pop(best)
        spent += size[best]
    keep = {Path(files[i]).resolve() for i in chosen}
    removed = 0
    for f in corpus.iterdir():
        if f.is_file() and f.resolve() not in keep:
            f.unlink()
            removed += 1
    total = len(set().union(covered, *cov.values()))
    print(f"trim.py: kept {len(chosen)} files ({spent} bytes) covering {len(covered)} of {total} edges; removed {removed}")


if __name__ == "__main__":
    main()
