"""Make the Fashion-MNIST subset embedded in pareco_fx/data from the full IDX files.

Usage: python scripts/make_embedded_subset.py [--src /usr/share/datasets/fashion-mnist]
                                              [--train 5000] [--test 1000] [--seed 0]

Install the source files with ``apt-get install dataset-fashion-mnist``. The subset is stratified
(the same count from every class) and seeded, so the same inputs give the same file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pareco_fx.data import DEFAULT_DIR, EMBEDDED_PATH, read_idx_dir, stratified_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_PATH)
    args = parser.parse_args()

    arrays = read_idx_dir(args.src)
    subset = {}
    for split, count in (("train", args.train), ("test", args.test)):
        labels = arrays[f"{split}_labels"]
        _, picked = stratified_indices(labels, count / len(labels), args.seed)
        subset[f"{split}_images"] = arrays[f"{split}_images"][picked].astype(np.uint8)
        subset[f"{split}_labels"] = labels[picked].astype(np.uint8)
    np.savez_compressed(args.out, **subset)
    sizes = ", ".join(f"{key} {value.shape}" for key, value in subset.items())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {sizes}")


if __name__ == "__main__":
    main()
