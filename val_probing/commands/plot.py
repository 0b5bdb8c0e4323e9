"""``val-probing plot``: the paper's position curves (and heatmaps) from saved runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from val_probing.commands.args import add_context_length, add_effective_length, add_run_dirs

log = logging.getLogger(__name__)

HELP = "draw position curves (and a depth x context-length heatmap) from lm-eval runs"

EPILOG = """\
RUN_DIR is an lm-eval --output_path folder (searched for results_*.json; run lm_eval with
--log_samples so the error bars can be computed), one results_*.json, or a
'val-probing score --json' file. Several may be given: one line per model.

writes, under --out:
  position_curves.png/.svg        1x3 panels (document, code, database), one line per model,
                                  error bars = std across sets, dashed line = the model's Avg
  heatmap_<task>.png/.svg         depth x context length, when a model was run at several lengths;
                                  a dashed line under each model's effective context length (the
                                  longest length up to which avg >= --min-avg and CI gap <= --max-gap,
                                  see 'val-probing report --help' and docs/plots.md)

examples:
  val-probing plot results/ --out figures/
  val-probing plot results/SmolLM2/ results/FILM-7B/ --out figures/ --format png pdf
  val-probing plot results/ --out figures/ --all-runs          # every run, not only the latest
  val-probing plot results/ --out figures/ --context-length 8192
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dirs(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures")
    parser.add_argument(
        "--all-runs", action="store_true", help="draw every run of a model, not only the latest"
    )
    add_context_length(parser, "curves")
    parser.add_argument(
        "--format", nargs="+", default=["png", "svg"], choices=["png", "svg", "pdf"], help="file formats"
    )
    parser.add_argument("--no-average", action="store_true", help="no dashed line at each model's Avg")
    add_effective_length(parser)


def run(args: argparse.Namespace) -> int:
    from val_probing.files import check_output_dir, check_paths
    from val_probing.plots import (
        heatmap_models,
        model_colors,
        plot_depth_heatmap,
        plot_position_curves,
        save_figure,
    )
    from val_probing.records import FAMILIES
    from val_probing.results import ensure_ci, keep_latest, load_results
    from val_probing.results.effective_length import effective_lengths
    from val_probing.results.select import curve_labels

    check_paths(inputs={"RUN_DIR": args.runs}, output_folders={"--out": args.out})
    check_output_dir(args.out)
    results = load_results(args.runs, latest_only=not args.all_runs)
    colors = model_colors(curve_labels(results).values())
    written = save_figure(
        plot_position_curves(
            results, context_length=args.context_length, show_average=not args.no_average, colors=colors
        ),
        args.out / "position_curves",
        args.format,
    )
    latest = keep_latest(results) if args.all_runs else results
    tasks = [task for task in FAMILIES if heatmap_models(latest, task)]
    if tasks:
        latest = ensure_ci(latest)  # the effective length reads the bucket CIs
        effective = effective_lengths(latest, min_avg=args.min_avg, max_gap=args.max_gap)
    for task in tasks:
        written += save_figure(
            plot_depth_heatmap(latest, task, effective=effective), args.out / f"heatmap_{task}", args.format
        )
    for path in written:
        print(path)
    return 0
