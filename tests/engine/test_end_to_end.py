"""End to end on the real CIFAR-10 JPEG archive at a tiny size: CLI -> search -> result.json."""
import json

from jaxnas import cli
from jaxnas.spaces import nb201


def test_rsps_search_on_real_cifar10(tmp_path, monkeypatch, cifar10_tgz, nb201_table_path):
    monkeypatch.setenv("JAXNAS_DATA", str(cifar10_tgz))
    out = tmp_path / "run"
    argv = ["search", "--method", "rsps", "--preset", "tiny", "--data", "cifar10", "--out", str(out),
            "--bench-table", str(nb201_table_path), "--no-progress", "nb201.C=4", "nb201.N=1",
            "train.epochs=1",
            "max_per_class=8", "train.batch_size=16", "eval.select_num=3", "eval.batch_size=16"]
    assert cli.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    arch = nb201.from_string(result["arch"])          # a valid NB201 architecture
    assert result["index"] == int(nb201.to_index(arch))
    assert result["data"] == str(cifar10_tgz.resolve())
    assert len(result["candidates"]) == 3
    # percent, as test_acc and the NB201 table: a multiple of 100/16 on the 16-image validation batch
    assert 0.0 <= result["valid_acc"] <= 100.0 and (result["valid_acc"] / 6.25).is_integer()
    assert set(result["bench"]) >= {"CIFAR10TestAccuracy200Epochs"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["loss"] > 0 for r in rows)   # 40 weight images / 16 = 2 steps
    assert json.loads((out / "config.json").read_text())["versions"]["jax"]
    # a finished run directory is refused without --overwrite
    assert cli.main(argv) == 2
