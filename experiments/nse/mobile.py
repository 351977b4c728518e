"""NSE on its own space at CPU scale (issue 32, item 7): one `jaxnas search --method nse --space mobile
--preset tiny` run on CIFAR-10 (the CIFAR skeleton at width 0.25, one identity cell a stage: 12
cells, the 27-operator pool, a subset of 5 a cell; 2 rounds of 2 epochs on 300 images per class, half
of them held out; the MAC target 24 M, window (24, 28) M and 4 extras; 20 samples a round end).

Reports each round's front (MACs, held-out accuracy), the subset sizes at each epoch end and the
pick; mobile.png is `jaxnas plot`'s fronts.png: every round's scored candidates and front.
Writes results_mobile.json, table_mobile.md and mobile.png here; a finished run is reused.
Usage: python experiments/nse/mobile.py [--runs runs/nse-mobile] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import cli  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/nse-mobile")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    run = pathlib.Path(a.runs) / f"nse-seed{a.seed}"
    result = cli(["search", "--space", "mobile", "--method", "nse", "--preset", "tiny", "--seed",
                  str(a.seed)], run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    ends = [r for r in rows if r.get("kind") == "round_end"]
    epochs = [r for r in rows if r.get("kind") == "epoch_end"]
    steps = [r for r in rows if "kind" not in r]
    pick = next(r for r in result["front"] if r["arch"] == result["arch"])  # with its params and flops
    out = {"pick": pick,
           "rounds": [{k: r[k] for k in ("front_size", "front_best_acc", "front_macs_min",
                                          "front_macs_max", "window_samples", "window_extras", "drawn",
                                          "front_macs", "front_acc")} for r in ends],
           "subset_sizes": [r["subset_sizes"] for r in epochs], "steps": result["steps"],
           "wall_s": result["wall_time_s"], "last_train_acc": steps[-1]["acc"] if steps else None}
    (HERE / "results_mobile.json").write_text(json.dumps(out, indent=2))
    lines = [f"`jaxnas search --method nse --space mobile --preset tiny --seed {a.seed}` on CIFAR-10: "
             f"{result['steps']} weight steps in {result['wall_time_s'] / 60:.0f} min on 2 cores.", "",
             "| round | scored (window + extras + old front) | drawn | front | its MACs (M) "
             "| best held-out acc (%) |",
             "|---|---|---|---|---|---|"]
    for i, r in enumerate(ends):
        lines.append(f"| {i + 1} | {r['window_samples']} + {r['window_extras']} + "
                     f"{len(r['scored_acc']) - r['window_samples'] - r['window_extras']} | {r['drawn']} | "
                     f"{r['front_size']} | {r['front_macs_min']:.2f}-{r['front_macs_max']:.2f} | "
                     f"{r['front_best_acc']:.1f} |")
    lines += ["", f"Pick (the last front's most accurate): `{result['arch']}`, {result['macs_m']:.2f} M "
              f"MACs, {pick['params']:,} parameters, {result['valid_acc']:.1f} % held-out accuracy.", "",
              "Subset sizes per cell at each epoch end: " + "; ".join(
                  "/".join(str(n) for n in s) for s in out["subset_sizes"]) + "."]
    (HERE / "table_mobile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # the fronts as `jaxnas plot RUN` draws them (fronts.png)
    from jaxnas.plot import plot_run
    shutil.copyfile(next(p for p in plot_run(run) if p.name == "fronts.png"), HERE / "mobile.png")


if __name__ == "__main__":
    main()
