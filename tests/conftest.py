"""Test setup: 8 emulated CPU devices (set before JAX initialises its backend)."""
import gc
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is dominated by XLA:CPU compile time; LLVM optimisation level 0 compiles several times
# faster and runs the small test programs about 2x slower (benchmarks/BENCHMARKS.md). Subprocesses
# (CLI tests) inherit it, so runs compared with each other are compiled alike.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS",
                                              "") + " --xla_backend_optimization_level=0").strip()

# 8 emulated devices share 2 cores. With multi-threaded Eigen, an async convolution's completion
# runs the rest of a device's program on a pool thread, where an all-reduce then blocks. Twice in
# fresh-clone CI runs (2026-11-23) the sharded eager RSPS search in test_loop died: once an abort
# (no message survived the capture), once a hang with XLA's collective timeouts raised, where gdb
# showed 5 of 8 device programs waiting in an AllReduceThunk rendezvous. Each device's program
# runs on one thread instead; the test programs are small, so little parallelism is lost.
# A second deadlock (many multi-device programs queued, one device's share never started) showed up
# in a fresh-clone run on 2026-11-23 despite this flag; jaxnas.cpu_kernels now waits for results
# that span several CPU devices (`_wait_if_multi_device`).
if "--xla_cpu_multi_thread_eigen" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_multi_thread_eigen=false"

# XLA:CPU's fusion emitters (on by default in jaxlib 0.10) generate each fusion through MLIR, which
# costs compile time the small test programs never win back: without them test_proxies.py +
# test_method_contract.py took 280 s instead of 351 s (BENCHMARKS.md 14b). Set only on the jaxlib
# minor version it was measured on: XLA refuses flags it does not know, and a later jaxlib may drop it.
# JAXNAS_TEST_FUSION_EMITTERS=1 keeps XLA's default (a test that checks bit-identity under it).
if "--xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"] and not os.environ.get(
        "JAXNAS_TEST_FUSION_EMITTERS"):
    from importlib.metadata import version as _version
    if _version("jaxlib").split(".")[:2] == ["0", "10"]:
        os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"

# Strict dtype promotion: an implicit mix of dtypes (e.g. float32 with int32 or float64 arrays) is
# an error, so no test passes by promoting silently. Set in the environment so the CLI
# subprocesses run under it too.
os.environ.setdefault("JAX_NUMPY_DTYPE_PROMOTION", "strict")

import jax  # noqa: E402  (the environment above must be set before JAX is imported)

jax.config.update("jax_num_cpu_devices", 8)
# XLA:CPU compiles take seconds to minutes; tests that build the same programs (and subprocesses,
# through JAXNAS_XLA_CACHE) share one persistent cache. It keeps every program, also those that
# compile in under a second (the CLI's default threshold): the tests rebuild many small ones (runs
# resumed in the same process, CLI subprocesses, the other xdist worker), and keeping them cut
# test_method_contract + test_loop from 309 to 261 CPU-seconds on a fresh clone (BENCHMARKS.md 14b).
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "xla-tests")
os.environ.setdefault("JAXNAS_XLA_CACHE", _CACHE)
os.environ.setdefault("JAXNAS_XLA_CACHE_MIN_SECONDS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAXNAS_XLA_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAXNAS_XLA_CACHE_MIN_SECONDS"]))

# Python's cyclic garbage collector, at its default thresholds, spent 7-8 % of test_proxies.py's
# time walking the heap (JAX's and PyTorch's many long-lived objects) in full collections. Rarer
# collections: test_proxies.py 186 -> 159 s in one process (BENCHMARKS.md 14b). Cycles are still
# collected, only less often.
gc.set_threshold(50_000, 50, 100)

import pathlib  # noqa: E402  (kept below the JAX set-up)

import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
NB201_TABLE = SHARED / "nb201" / "nats_tss_hp200_test_acc.csv"
CIFAR10_TGZ = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def nb201_table_path():
    if not NB201_TABLE.exists():
        pytest.fail(f"shared NB201 table missing at {NB201_TABLE}")
    return NB201_TABLE


@pytest.fixture(scope="session")
def cifar10_tgz():
    if not CIFAR10_TGZ.exists():
        pytest.fail(f"shared CIFAR-10 JPEG archive missing at {CIFAR10_TGZ}")
    return CIFAR10_TGZ


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """10 classes x 12 train / 4 test 32x32 PNGs, class-dependent colour plus noise."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.normal(25 * c, 60, (32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def torch_one_thread():
    """PyTorch's thread pool costs more than it saves on these tiny tensors (and spins on a busy CPU).

    Modules comparing against PyTorch apply it with `pytestmark = pytest.mark.usefixtures(...)`.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# pytest-xdist hands whole files to the workers in collection order, one at a time as each finishes.
# The largest files go first (sums of their tests' times in a fresh clone, BENCHMARKS.md 14b), so
# that none of them starts last while the other worker has nothing left to do; the rest keep their
# order, and so does every file's own.
LARGEST_FIRST = ("methods/test_proxies.py", "methods/test_method_contract.py",
                 "spaces/test_nb201_networks.py", "engine/test_evaluate.py", "engine/test_loop.py",
                 "methods/test_setn.py")


def pytest_collection_modifyitems(items):
    here = pathlib.Path(__file__).resolve().parent
    rank = {name: i for i, name in enumerate(LARGEST_FIRST)}

    def place(item):
        try:
            return rank.get(item.path.resolve().relative_to(here).as_posix(), len(rank))
        except ValueError:  # a test outside tests/
            return len(rank)

    items.sort(key=place)
