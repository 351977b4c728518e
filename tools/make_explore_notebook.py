"""Writes notebooks/explore_candidates.ipynb (edit here, rerun, commit both)."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
cells = []
cells.append(nbf.v4.new_markdown_cell("""# Exploring a batch of candidate architectures

Sample NAS-Bench-201 candidates, score them three ways and compare with the benchmark's ground truth:

1. **NASWOT** and **synflow**: training-free proxies, every candidate a freshly initialised network (`jaxnas.proxies`);
2. **a briefly trained supernet**: RSPS weight sharing for a short while, then each candidate's accuracy on one validation batch with the shared weights (`jaxnas.evaluate`).

Every score is a jitted program over the whole batch of candidates. Set `JAXNAS_NOTEBOOK_TINY=1` for a seconds-sized version (the test suite runs it that way)."""))
cells.append(nbf.v4.new_code_cell("""import os, pathlib
import numpy as np
import jax, jax.numpy as jnp
import matplotlib.pyplot as plt

from jaxnas import data as data_lib
from jaxnas.bench import load_table, kendall_tau
from jaxnas.config import PRESETS
from jaxnas.methods import RSPS
from jaxnas.proxies import ProxyScorer
from jaxnas.proxies.run import proxy_batches
from jaxnas.spaces import nb201
from jaxnas.train.loop import SearchRun

TINY = os.environ.get("JAXNAS_NOTEBOOK_TINY") == "1"
DATA = os.environ.get("JAXNAS_NOTEBOOK_DATA", "cifar10")   # cifar10: $JAXNAS_DATA, ../shared/data, else TFDS
TABLE = os.environ.get("JAXNAS_NOTEBOOK_TABLE", str(pathlib.Path.cwd().parents[1] / "shared/data/nb201/nats_tss_hp200_test_acc.csv"))
K = 8 if TINY else 64                                      # candidates
PROXY_NET = dict(C=4, N=1) if TINY else dict(C=16, N=5)    # the network the proxies score (NB201: C=16, N=5)
cfg = PRESETS["tiny"].replace(data=DATA, seed=0, proxy_batch_size=16 if TINY else 128)
if TINY:
    cfg = cfg.replace(C=2, epochs=1, batch_size=16, eval_batch_size=32, max_per_class=None)
print("data:", data_lib.resolve(DATA), "| candidates:", K, "| proxy network:", PROXY_NET)"""))
cells.append(nbf.v4.new_code_cell("""dataset = data_lib.load(cfg.data, max_per_class=cfg.max_per_class)
table = load_table(TABLE)
archs = np.asarray(nb201.sample(jax.random.key(cfg.seed), K))
truth = table.values(archs, "cifar10")          # NB201 CIFAR-10 test accuracy (%) of each candidate
print(dataset, "\\nfirst candidate:", nb201.to_string(archs[0]), f"-> {truth[0]:.2f}%")"""))
cells.append(nbf.v4.new_markdown_cell("## Training-free scores (one jitted call for all candidates)"))
cells.append(nbf.v4.new_code_cell("""(x, y), _ = proxy_batches(dataset, cfg)
scorer = ProxyScorer("naswot,synflow", **PROXY_NET, num_classes=dataset.num_classes, seed=cfg.seed)
proxy = scorer(archs, x, y)
for name in ("naswot", "synflow"):
    print(f"{name:8s} Kendall tau vs NB201: {kendall_tau(proxy[name], truth):+.3f}")"""))
cells.append(nbf.v4.new_markdown_cell("## A briefly trained supernet (RSPS, the search loop of `jaxnas search`)"))
cells.append(nbf.v4.new_code_cell("""import tempfile
run = SearchRun(cfg.replace(method="rsps"), tempfile.mkdtemp(), method_cls=RSPS, dataset=dataset, progress=not TINY)
result = run.run()                                # trains (checkpointed), picks its own best
ranked = jax.device_get(run.method.rank(run.state, jnp.asarray(archs), run.ctx))
supernet_acc = np.asarray(ranked["acc"])
print(f"supernet one-batch accuracy Kendall tau vs NB201: {kendall_tau(supernet_acc, truth):+.3f}")"""))
cells.append(nbf.v4.new_markdown_cell("## Scores against the ground truth"))
cells.append(nbf.v4.new_code_cell("""scores = {"NASWOT": proxy["naswot"], "synflow (log)": proxy["synflow"], "supernet val. acc.": supernet_acc}
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for ax, (name, s) in zip(axes, scores.items()):
    ok = np.isfinite(s)
    ax.scatter(s[ok], truth[ok], s=12, alpha=0.7)
    ax.set_xlabel(name); ax.set_ylabel("NB201 CIFAR-10 test acc. (%)")
    ax.set_title(f"{name}: Kendall tau {kendall_tau(s, truth):+.2f}")
fig.tight_layout()
plt.show()"""))
cells.append(nbf.v4.new_markdown_cell("## The best few candidates by each score"))
cells.append(nbf.v4.new_code_cell("""for name, s in scores.items():
    order = np.argsort(-np.nan_to_num(s, nan=-np.inf))[:3]
    print(f"top 3 by {name}:")
    for i in order:
        print(f"   {truth[i]:6.2f}%  index {int(nb201.to_index(archs[i])):5d}  {nb201.to_string(archs[i])}")
print(f"best of the batch by ground truth: {truth.max():.2f}%")"""))
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks/explore_candidates.ipynb"))
