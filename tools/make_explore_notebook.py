"""Writes notebooks/explore_candidates.ipynb (edit here, rerun, commit both)."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
cells = []
cells.append(nbf.v4.new_markdown_cell("""# Exploring a batch of candidate architectures

Sample NAS-Bench-201 candidates, score them three ways and compare with the benchmark's ground truth:

1. **NASWOT** and **synflow**: training-free proxies, every candidate a freshly initialised network (`jaxnas.proxies`);
2. **a briefly trained supernet**: RSPS weight sharing for a short while, then each candidate's accuracy on one validation batch with the shared weights (`jaxnas.evaluate`).

NASWOT is one jitted program over the whole batch of candidates. synflow differentiates the network: on CPU it runs one candidate at a time through jaxnas's eager kernels (the policy of `jaxnas score`, `make_scorer`), since the traced gradient program compiles for many minutes there; on a GPU it is jitted like NASWOT.

The notebook finds the NB201 table from the jaxnas checkout it belongs to (`<repo>/../shared/data/nb201/`, whether Jupyter starts it in `notebooks/` or at the repository root); `JAXNAS_NOTEBOOK_TABLE` overrides that. Set `JAXNAS_NOTEBOOK_TINY=1` for a seconds-sized version (the stored outputs and the test suite run it that way)."""))
cells.append(nbf.v4.new_code_cell("""import os, pathlib
import numpy as np
import jax, jax.numpy as jnp
import matplotlib.pyplot as plt

import jaxnas
from jaxnas import data as data_lib
from jaxnas.bench import load_table, kendall_tau
from jaxnas.config import PRESETS
from jaxnas.methods import RSPS
from jaxnas.proxies.scoring import make_scorer, proxy_batches
from jaxnas.spaces import nb201
from jaxnas.train.loop import SearchRun


def find_repo_root():
    \"\"\"The jaxnas checkout: the first folder from the working directory up (Jupyter starts kernels in
    notebooks/, scripts and CI often at the root) holding this notebook and jaxnas's pyproject.toml;
    else the checkout jaxnas is imported from; None if neither is one.\"\"\"
    cwd = pathlib.Path.cwd().resolve()
    for d in (cwd, *cwd.parents, pathlib.Path(jaxnas.__file__).resolve().parents[1]):
        toml = d / "pyproject.toml"
        if (d / "notebooks/explore_candidates.ipynb").is_file() and toml.is_file() \\
                and 'name = "jaxnas"' in toml.read_text():
            return d
    return None


def shown(path):
    \"\"\"A path as printed: relative to the repository root if beside it (../shared/...), else its name.\"\"\"
    if str(path).startswith("tfds:"):
        return str(path)
    rel = os.path.relpath(pathlib.Path(path).resolve(), ROOT) if ROOT else None
    return rel if rel and not rel.startswith(os.path.join("..", "..")) else pathlib.Path(path).name


ROOT = find_repo_root()
TINY = os.environ.get("JAXNAS_NOTEBOOK_TINY") == "1"
DATA = os.environ.get("JAXNAS_NOTEBOOK_DATA", "cifar10")   # cifar10: $JAXNAS_DATA, ../shared/data, else TFDS
TABLE = (os.environ.get("JAXNAS_NOTEBOOK_TABLE")                    # else found from the repository's layout
         or ROOT and ROOT.parent / "shared/data/nb201/nats_tss_hp200_test_acc.csv")
if not TABLE or not pathlib.Path(TABLE).is_file():
    raise FileNotFoundError(
        f"NB201 table not found ({TABLE or 'no jaxnas checkout at or above ' + str(pathlib.Path.cwd())}): "
        "expected <jaxnas repo>/../shared/data/nb201/nats_tss_hp200_test_acc.csv; "
        "set JAXNAS_NOTEBOOK_TABLE to its path")
K = 8 if TINY else 64                                      # candidates
PROXY_NET = {"nb201.C": 4, "nb201.N": 1} if TINY else {"nb201.C": 16, "nb201.N": 5}    # the network the proxies score (NB201: C=16, N=5)
cfg = PRESETS["tiny"].replace(data=DATA, seed=0).set({"proxy.batch_size": 16 if TINY else 128})
if TINY:  # 20 images a class: 200 training images of CIFAR-10, decoded in seconds
    cfg = cfg.replace(max_per_class=20).set({"nb201.C": 2, "train.epochs": 1, "train.batch_size": 16, "eval.batch_size": 32})
print("data:", shown(data_lib.resolve(DATA)), "| table:", shown(TABLE))
print("candidates:", K, "| proxy network:", PROXY_NET, "| backend:", jax.default_backend())"""))
cells.append(nbf.v4.new_code_cell("""dataset = data_lib.load(cfg.data, max_per_class=cfg.max_per_class)
table = load_table(TABLE)
archs = np.asarray(nb201.sample(jax.random.key(cfg.seed), K))
truth = table.values(archs, "cifar10")          # NB201 CIFAR-10 test accuracy (%) of each candidate
print(dataset, "\\nfirst candidate:", nb201.to_string(archs[0]), f"-> {truth[0]:.2f}%")"""))
cells.append(nbf.v4.new_markdown_cell("## Training-free scores (a fresh network per candidate)"))
cells.append(nbf.v4.new_code_cell("""(x, y), _ = proxy_batches(dataset, cfg)
# jaxnas score's policy: on CPU synflow's gradients run on the host (eager kernels), elsewhere in the program
scorer = make_scorer(cfg.set(PROXY_NET), ["naswot", "synflow"], dataset.num_classes)
proxy = scorer(archs, x, y)
for name in ("naswot", "synflow"):
    print(f"{name:8s} Kendall tau vs NB201: {kendall_tau(proxy[name], truth):+.3f}")"""))
cells.append(nbf.v4.new_markdown_cell("## A briefly trained supernet (RSPS, the search loop of `jaxnas search`)"))
cells.append(nbf.v4.new_code_cell("""import tempfile
run = SearchRun(cfg.replace(method="rsps"), tempfile.mkdtemp(), method_cls=RSPS, dataset=dataset,
                progress=not TINY)                # tiny: no progress bars in the stored outputs
result = run.run()                                # trains (checkpointed), picks its own best
ranked = jax.device_get(run.method.rank(run.state, jnp.asarray(archs), run.evaluator))
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
