#!/usr/bin/env python3
"""Plots CIFAR-10 test accuracy against wall-clock minutes: the fast recipe's budgeted runs, the reference recipe
and PyTorch + timm's reference curve (docs/fast_training.md, "Accuracy against the clock").

Usage: plot_time_to_accuracy.py OUT.png --fast RUN.csv [RUN.csv ...]
                                [--reference REF.csv ... --reference-img-per-s R] [--reference-timed RUN.csv ...]
                                [--pytorch-img-per-s P] [--cpu TEXT]

--fast      train_cifar10 CSVs of `--recipe fast --time-budget M` runs. Each run is one point: the test accuracy of
            its last row at its elapsed seconds (start to the final evaluation). Runs whose budgets agree within 10%
            form one group: its points are drawn, and a line joins the group means.
--reference train_cifar10 CSVs of the reference recipe, one row per epoch (several seeds: their mean is drawn).
            Epoch e is placed at e * 49,920 images / R images/s: the step time of the reference model measured on the
            plotted machine (bench/vit_train_step), so that curves from runs made on other machines (or at one thread
            each, side by side) land where this machine would put them. Evaluation time is not counted.
--reference-timed  train_cifar10 CSVs of reference-recipe runs made on the plotted machine, each drawn at its own
            elapsed seconds (evaluations and data loading included): a check on where --reference places the curve.
--pytorch-img-per-s  places PyTorch + timm's per-epoch accuracies of ../shared/GUIDE.md (one seed, 10- and 30-epoch
            schedules) the same way, at PyTorch's step time measured on the plotted machine
            (bench/pytorch_train_step.py).

Needs matplotlib (pip install matplotlib); a development tool, not a dependency of the library.
"""
import argparse
import statistics
import sys

IMAGES_PER_EPOCH = 49920  # 390 batches of 128 (the last incomplete batch is dropped)

# PyTorch + timm's per-epoch test accuracy and the CSV reader, shared with the per-epoch plot.
from plot_training_curve import REFERENCE as PYTORCH_REFERENCE, read_rows


def evaluated_rows(path):
    return [r for r in read_rows(path) if r["test_acc"] != ""]


def final_point(path):
    rows = evaluated_rows(path)
    if not rows:
        sys.exit(f"{path}: no evaluated row")
    return float(rows[-1]["elapsed_s"]) / 60.0, float(rows[-1]["test_acc"])


def group_by_budget(points):
    groups = []
    for minutes, accuracy in sorted(points):
        if groups and minutes <= groups[-1][0][0] * 1.1:
            groups[-1].append((minutes, accuracy))
        else:
            groups.append([(minutes, accuracy)])
    return groups


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--fast", nargs="+", required=True)
    parser.add_argument("--reference", nargs="+", default=[])
    parser.add_argument("--reference-img-per-s", type=float)
    parser.add_argument("--reference-timed", nargs="+", default=[])
    parser.add_argument("--pytorch-img-per-s", type=float)
    parser.add_argument("--cpu", default="", help="the CPU of the runs, for the title")
    args = parser.parse_args()
    if args.reference and not args.reference_img_per_s:
        parser.error("--reference needs --reference-img-per-s (the reference model's images/s on this machine)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=100)
    groups = group_by_budget([final_point(path) for path in args.fast])
    xs = [statistics.mean(m for m, _ in g) for g in groups]
    ys = [statistics.mean(a for _, a in g) for g in groups]
    ax.plot(xs, ys, "-o", color="tab:red", zorder=3,
            label=f"tessera fast recipe ({len(args.fast)} runs; the mean per budget)")
    for g in groups:
        ax.scatter([m for m, _ in g], [a for _, a in g], color="tab:red", alpha=0.4, s=14, zorder=3)
    for (x, y), g in zip(zip(xs, ys), groups):
        ax.annotate(f"{y:.1f}%", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8, color="tab:red")

    if args.reference:
        curves = [[float(r["test_acc"]) for r in evaluated_rows(path)] for path in args.reference]
        epochs = min(len(c) for c in curves)
        mean = [statistics.mean(c[e] for c in curves) for e in range(epochs)]
        minutes = [(e + 1) * IMAGES_PER_EPOCH / args.reference_img_per_s / 60.0 for e in range(epochs)]
        ax.plot(minutes, mean, "-s", color="tab:blue", markersize=3,
                label=f"tessera reference recipe, {epochs} epochs (mean of {len(curves)} seeds)")
    for i, path in enumerate(args.reference_timed):
        rows = evaluated_rows(path)
        runs = "one run" if len(args.reference_timed) == 1 else f"{len(args.reference_timed)} runs"
        label = f"tessera reference recipe as timed here ({runs})" if i == 0 else None
        ax.plot([float(r["elapsed_s"]) / 60.0 for r in rows], [float(r["test_acc"]) for r in rows], "-^",
                color="tab:cyan", markersize=3, label=label)
    if args.pytorch_img_per_s:
        for epochs, style in ((10, ":"), (30, "--")):
            accuracy = PYTORCH_REFERENCE[epochs]
            minutes = [(e + 1) * IMAGES_PER_EPOCH / args.pytorch_img_per_s / 60.0 for e in range(epochs)]
            ax.plot(minutes, accuracy, style, color="tab:gray", label=f"PyTorch + timm reference, {epochs} epochs")

    ax.set_xlabel("wall-clock minutes on 2 cores")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    title = "Time to accuracy" + (f" ({args.cpu})" if args.cpu else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
