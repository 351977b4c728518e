"""`jaxnas.plot`: PNGs of synthetic run directories (no JAX programs are compiled)."""
import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from jaxnas.bench import load_table
from jaxnas.plot import PlotError, plot_run
from jaxnas.spaces import nb201

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        assert img.width > 0 and img.height > 0


def _config(run, data="cifar10"):
    run.mkdir(parents=True, exist_ok=True)
    record = {"config": {"data": data, "method": "setn"}, "versions": {}, "argv": ["jaxnas"]}
    (run / "config.json").write_text(json.dumps(record))


def _search_run(run, torn_last=True):
    _config(run)
    rows = []
    for epoch in range(3):
        for i in range(1, 4):
            step = epoch * 3 + i
            rows.append({"loss": 2.3 / step, "acc": 10.0 + 5 * step, "lr": 0.025 * math.cos(step / 10),
                         "images_per_s": 100.0, "epoch": epoch, "step": step})
        rows.append({"selected_arch": nb201.to_string(nb201.from_index(epoch)),
                     "selected_valid_acc": 40.0 + epoch,
                     "selected_valid_loss": 1.5 - 0.1 * epoch, "nested": {"a": 1}, "flag": True,
                     "epoch": epoch, "step": epoch * 3 + 3, "kind": "epoch_end"})
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (run / "metrics.jsonl").write_text(text + ('{"loss": 0.5, "acc": 8' if torn_last else ""))
    return run


def _score_run(run, indices, data="cifar10"):
    _config(run, data)
    with open(run / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "score", "da_min"])
        for k, i in enumerate(indices):
            s = "-inf" if k == 0 else ("nan" if k == 1 else repr(float(k)))
            w.writerow([i, nb201.to_string(nb201.from_index(i)), s, repr(-0.5 * k)])
        f.write("20,|none~0|+|none~0|none~1|+|no")  # torn last row
    return run


def test_search_run_curves_and_epoch_metrics(tmp_path):
    run = _search_run(tmp_path / "run")
    paths = plot_run(run)
    assert [p.name for p in paths] == ["curves.png", "epoch_metrics.png"]
    for p in paths:
        assert p.parent == run / "plots"
        _check_png(p)


def test_search_run_without_epoch_end_rows(tmp_path):
    run = tmp_path / "run"
    _config(run)
    (run / "metrics.jsonl").write_text(json.dumps({"loss": 1.0, "acc": 50.0, "lr": 0.1, "epoch": 0,
                                                   "step": 1}))
    assert [p.name for p in plot_run(run)] == ["curves.png"]


def test_score_run_against_nb201_table(tmp_path, nb201_table_path):
    run = _score_run(tmp_path / "run", [0, 1, 2, 100, 2000, 5000, 9999, 15624], data="cifar100")
    paths = plot_run(run, bench_table=load_table(nb201_table_path))
    assert [p.name for p in paths] == ["scores.png"]
    _check_png(paths[0])


def test_score_run_without_table_histograms(tmp_path):
    run = _score_run(tmp_path / "run", np.arange(30))
    paths = plot_run(run)
    assert [p.name for p in paths] == ["scores.png"]
    _check_png(paths[0])


def test_missing_folder(tmp_path):
    with pytest.raises(PlotError, match="does not exist"):
        plot_run(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(PlotError,
                       match=r"holds no jaxnas run \(no config.json written by jaxnas, no metrics.jsonl"):
        plot_run(tmp_path)


def test_no_training_rows_yet(tmp_path):
    run = tmp_path / "run"
    _config(run)
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(PlotError, match="nothing to plot yet"):
        plot_run(run)


def test_torn_middle_line_names_file_and_line(tmp_path):
    run = _search_run(tmp_path / "run", torn_last=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PlotError, match=r"metrics\.jsonl:3:"):
        plot_run(run)


def test_bad_middle_score_row_names_file_and_line(tmp_path):
    run = _score_run(tmp_path / "run", [0, 1, 2, 3])
    lines = (run / "scores.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",oops"
    (run / "scores.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PlotError, match=r"scores\.csv:3:"):
        plot_run(run)
