#!/usr/bin/env python3
"""Plots the per-epoch test accuracy of a train_cifar10 CSV beside the PyTorch + timm reference run.

Usage: plot_training_curve.py TRAIN.csv [TRAIN.csv ...] OUT.png [--labels NAME ...] [--title TEXT]
                              [--timm TIMM.csv ...] [--timm-labels NAME ...]

Several CSVs (for example runs with different --seed) are drawn as one line each, labelled by --labels or else
by their file names. --timm adds runs of timm itself in the same CSV format (scripts/timm_reference_cpu.py writes
them), drawn dashed.

The reference curve is PyTorch + timm trained with the same recipe on the same JPEG data, as recorded in
../shared/GUIDE.md ("Reference numbers"; made by ../shared/reference/timm_reference.py). The reference for the
CSV's epoch count is drawn (10 or 30 epochs; the cosine schedule differs between them). Needs matplotlib
(pip install matplotlib); a development tool, not a dependency of the library.
"""
import argparse
import csv
import sys

REFERENCE = {  # test accuracy (%) after each epoch, PyTorch + timm, one seed
    10: [41.1, 49.8, 51.3, 56.1, 60.5, 63.0, 66.3, 68.5, 69.5, 70.1],
    30: [41.1, 49.5, 52.0, 55.0, 58.3, 60.6, 63.0, 64.8, 65.5, 65.5, 67.8, 69.4, 70.4, 71.9, 71.4, 72.9, 73.7,
         74.8, 74.9, 75.3, 75.8, 76.9, 76.8, 77.2, 77.1, 77.5, 77.7, 77.6, 77.8, 77.5],
}


def read_rows(path):
    """The rows of a train_cifar10 CSV as dicts (exits with a message if the header is not train_cifar10's)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    expected = ["epoch", "step", "train_loss", "test_acc", "img_per_s", "elapsed_s"]
    if not rows or list(rows[0].keys()) != expected:
        sys.exit(f"{path}: expected a train_cifar10 CSV with the header {','.join(expected)}")
    return rows


def read_csv(path):
    rows = read_rows(path)
    return [int(r["epoch"]) for r in rows], [float(r["test_acc"]) for r in rows], [float(r["elapsed_s"]) for r in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+")
    parser.add_argument("out")
    parser.add_argument("--labels", nargs="+", help="one legend name per CSV (default: the file names)")
    parser.add_argument("--title", default="vit_cifar on CIFAR-10, reference recipe")
    parser.add_argument("--timm", nargs="+", default=[], help="CSVs of timm runs (scripts/timm_reference_cpu.py)")
    parser.add_argument("--timm-labels", nargs="+", help="one legend name per --timm CSV (default: the file names)")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.csv):
        parser.error(f"--labels gives {len(args.labels)} names for {len(args.csv)} CSV files")
    if args.timm_labels and len(args.timm_labels) != len(args.timm):
        parser.error(f"--timm-labels gives {len(args.timm_labels)} names for {len(args.timm)} CSV files")
    labels = args.labels or [path.rsplit("/", 1)[-1] for path in args.csv]
    timm_labels = args.timm_labels or [path.rsplit("/", 1)[-1] for path in args.timm]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    last_epoch = 0
    for path, label in zip(args.csv, labels):
        epochs, accuracy, elapsed = read_csv(path)
        last_epoch = max(last_epoch, max(epochs))
        name = f"tessera {label}" if len(args.csv) > 1 else "tessera"
        ax.plot(epochs, accuracy, "o-", label=f"{name} ({accuracy[-1]:.1f}% after {max(epochs)}, "
                                              f"{elapsed[-1] / 60:.0f} min on 2 cores)")
    for path, label in zip(args.timm, timm_labels):
        epochs, accuracy, elapsed = read_csv(path)
        last_epoch = max(last_epoch, max(epochs))
        ax.plot(epochs, accuracy, "^:", label=f"timm {label} ({accuracy[-1]:.1f}% after {max(epochs)}, "
                                              f"{elapsed[-1] / 60:.0f} min on 2 cores)")
    reference = REFERENCE.get(last_epoch)
    if reference:
        ax.plot(range(1, len(reference) + 1), reference, "s--",
                label=f"PyTorch + timm reference, GPU, one seed ({reference[-1]}%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(args.title)
    ax.set_xticks(range(1, last_epoch + 1, 1 if last_epoch <= 10 else 5))
    ax.grid(alpha=0.3)
    # Below the axes, where it covers no curve (inside, it hid the first epochs); the figure grows to hold it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", frameon=False)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
