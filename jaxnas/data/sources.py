"""Datasets as plain uint8 numpy arrays: TFDS names, image folders and .tar.gz archives of them.

Everything downstream (device placement, augmentation, splits) wants whole splits as arrays, so a
source is decoded once -- in a process pool when cores are idle, since decoding 60,000 small JPEGs
is Python-bound -- and cached as an uncompressed .npz keyed by the source's path, size and mtime;
later loads only read that file. TFDS (and the TensorFlow it needs to prepare data) is imported only when a
TFDS name is asked for: the offline image-folder path needs nothing but Pillow.

`cifar10` is read from the first of: $JAXNAS_DATA; the source tree's ../shared/data/cifar10-jpeg/
cifar10-jpeg.tar.gz; shared/data/... and then ../shared/data/... from the working directory (an
installed wheel run from a project folder); else TFDS.

Normalisation follows the data, not the spec's spelling, so one archive gives one dataset however it
is named: 32x32 images in exactly CIFAR-10's (CIFAR-100's) classes are that dataset, named so and
given xautodl's published mean/std; anything else gets its training images' own statistics.
`Dataset.norm_source` says which.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import signal
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import jaxnas

NAMES = ("cifar10", "cifar100", "imagenet16-120")
# name -> (TFDS name, TFDS split used as test, number of leading classes kept or None for all).
_TFDS = {
    "cifar10": ("cifar10", "test", None),
    "cifar100": ("cifar100", "test", None),
    "imagenet16-120": ("imagenet_resized/16x16", "validation", 120),  # NB201: labels < 120
}
# Per-channel mean/std in [0, 1] units; xautodl's values for the NB201 datasets.
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet16-120": ((0.4811, 0.4575, 0.4078), (0.2605, 0.2533, 0.2683)),
}


def shared_paths(relative) -> tuple[Path, ...]:
    """Where a file of the shared data folder (`shared/data/...`) may be: beside the source tree,
    then under the working directory, then under its parent (an installed wheel run from a project)."""
    return (Path(jaxnas.__file__).resolve().parents[2] / relative, Path(relative), ".." / Path(relative))


def find_shared(relative) -> Path | None:
    """The first of `shared_paths(relative)` that exists, or None."""
    return next((p for p in shared_paths(relative) if p.exists()), None)


_CIFAR10_PATHS = shared_paths("shared/data/cifar10-jpeg/cifar10-jpeg.tar.gz")
SHARED_CIFAR10, CWD_CIFAR10 = _CIFAR10_PATHS[0], _CIFAR10_PATHS[1:]  # beside the source tree; from the cwd
# Class folder names (sorted) that identify CIFAR data; the images must also be 32x32.
_CIFAR_CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
        "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
        "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
        "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
        "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
        "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
        "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
        "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
        "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
        "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
        "willow_tree", "wolf", "woman", "worm",
    ),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
_LAYOUT = "expected train/<class>/*.jpg and test/<class>/*.jpg (or .png)"
_CACHE_VERSION = 2  # 2: norm_source; stats and name from the data, not the spec
_POOL_MIN_IMAGES = 2048  # below this, decoding in-process beats starting worker processes
_CHUNK = 1000  # images per worker task


class DataError(ValueError):
    """A dataset is missing or malformed; the message says what was expected and where."""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled image dataset as host arrays, images NHWC uint8."""

    name: str
    train_images: np.ndarray  # uint8[N, H, W, 3]
    train_labels: np.ndarray  # int32[N]
    test_images: np.ndarray  # uint8[M, H, W, 3]
    test_labels: np.ndarray  # int32[M]
    num_classes: int
    class_names: tuple[str, ...]
    mean: np.ndarray  # float32[3], per channel, [0, 1] units
    std: np.ndarray  # float32[3]
    norm_source: str  # where mean/std came from: published values or the training images

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={self.train_images.shape}, test={self.test_images.shape}, "
                f"num_classes={self.num_classes})")


def resolve(spec) -> str:
    """Say where `spec` will be read from: an absolute path, or 'tfds:<name>'."""
    s = os.fspath(spec)
    if s == "cifar10":
        env = os.environ.get("JAXNAS_DATA")
        if env:
            p = Path(env).expanduser()
            if not p.exists():
                raise DataError(f"JAXNAS_DATA={env} does not exist: expected an image folder or .tar.gz; "
                                f"{_LAYOUT}")
            return str(p.resolve())
        for p in (SHARED_CIFAR10, *CWD_CIFAR10):
            if p.exists():
                return str(p.resolve())
    if s in _TFDS:
        return "tfds:" + _TFDS[s][0]
    p = Path(s).expanduser()
    if p.is_dir() or (p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES)):
        return str(p.resolve())
    what = f"{p.resolve()} is not a folder or {'/'.join(ARCHIVE_SUFFIXES)} archive" if p.exists() else (
        f"no such path {p.resolve()}")
    raise DataError(f"unknown dataset {s!r}: expected one of {', '.join(NAMES)} or a path to an image folder "
                    f"or .tar.gz ({_LAYOUT}); {what}")


def load(spec, cache_dir=None, max_per_class=None) -> Dataset:
    """Load a dataset by TFDS name or image-folder/.tar.gz path, through the on-disk cache."""
    if max_per_class is not None and max_per_class < 1:
        raise DataError(f"max_per_class must be a positive integer or None, got {max_per_class}")
    source = resolve(spec)
    tfds_name = os.fspath(spec) if source.startswith("tfds:") else None
    # The key holds only what the content depends on (not the spec's spelling), so "cifar10" and the
    # archive's path share one cache file.
    if tfds_name:
        key, label = {"tfds": source, "data_dir": os.environ.get("TFDS_DATA_DIR", "")}, tfds_name
    else:
        key, label = {"path": source, **_fingerprint(Path(source))}, _stem(Path(source).name)
    key.update(max_per_class=max_per_class, version=_CACHE_VERSION)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = _cache_dir(cache_dir) / f"{label}-{max_per_class or 'all'}-{digest}.npz"
    ds = _read_cache(cache)
    if ds is None:
        if tfds_name:
            ds = _load_tfds(tfds_name, max_per_class)
        else:
            ds = _load_images(label, Path(source), max_per_class)
        _write_cache(cache, ds)
    return ds


def _stem(base: str) -> str:
    """A file or folder name less any archive suffix: the dataset name of an unrecognised source."""
    return next((base[: -len(s)] for s in ARCHIVE_SUFFIXES if base.endswith(s)), base)


# ----------------------------------------------------------------------------------------- cache


def _cache_dir(cache_dir) -> Path:
    return Path(cache_dir or os.environ.get("JAXNAS_CACHE") or Path.home() / ".cache" / "jaxnas").expanduser()


def _fingerprint(path: Path) -> dict:
    """Size and mtime of an archive; for a folder, its image paths, total size and newest mtime."""
    if path.is_file():
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    names, size, mtime = hashlib.sha256(), 0, 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(IMAGE_SUFFIXES):
                full = os.path.join(root, f)
                st = os.stat(full)
                names.update(os.path.relpath(full, path).encode() + b"\0")
                size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
    return {"files": names.hexdigest(), "size": size, "mtime_ns": mtime}


def _read_cache(path: Path) -> Dataset | None:
    try:
        with np.load(path) as z:
            names = tuple(str(c) for c in z["class_names"])
            return Dataset(str(z["name"]), z["train_images"], z["train_labels"], z["test_images"],
                           z["test_labels"], len(names), names, z["mean"], z["std"], str(z["norm_source"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # rebuilt, never trusted
        warnings.warn(f"ignoring unreadable dataset cache {path}: {e}", stacklevel=2)
        return None


def _write_cache(path: Path, ds: Dataset) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, name=np.array(ds.name), train_images=ds.train_images, train_labels=ds.train_labels,
                     test_images=ds.test_images, test_labels=ds.test_labels,
                     class_names=np.array(ds.class_names, dtype=str), mean=ds.mean, std=ds.std,
                     norm_source=np.array(ds.norm_source))
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write dataset cache {path}: {e}", stacklevel=2)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------- image folders


def _load_images(name: str, path: Path, max_per_class) -> Dataset:
    """Decode an image folder or tar archive laid out train/<class>/*, test/<class>/*.

    `name` is used unless the data is CIFAR-10/100 (its class names, 32x32), which also decides the
    normalisation: published statistics for CIFAR, else the training images' own.
    """
    tree = _scan_archive(path) if path.is_file() else _scan_folder(path)
    classes = _check_tree(tree, path)
    splits = {}
    for split in SPLITS:
        items = [(f"{split}/{c}/{f}", ref, label) for label, c in enumerate(classes)
                 for f, ref in sorted(tree[split][c])[:max_per_class]]
        splits[split] = ([(n, r) for n, r, _ in items], np.array([lb for *_, lb in items], np.int32))
    arrays = _decode_all(splits["train"][0] + splits["test"][0], path)
    n_train = len(splits["train"][1])
    train, test = arrays[:n_train], arrays[n_train:]
    # CIFAR has at most 50,000 / 10,000 images in its splits; CINIC-10 shares CIFAR-10's classes and
    # size but is larger, so its images are not normalised with CIFAR's statistics
    full = {split: sum(len(tree[split][c]) for c in classes) for split in SPLITS}
    known = next((k for k, names in _CIFAR_CLASSES.items()
                  if tuple(classes) == names and arrays.shape[1:3] == (32, 32)
                  and full["train"] <= 50000 and full["test"] <= 10000), None)
    if known:
        name, (mean, std), source = known, _STATS[known], _published(known)
    else:
        (mean, std), source = _channel_stats(train), f"computed from the {n_train} training images"
    return Dataset(name, train, splits["train"][1], test, splits["test"][1], len(classes), tuple(classes),
                   np.asarray(mean, np.float32), np.asarray(std, np.float32), source)


def _published(name: str) -> str:
    """The norm_source of xautodl's published statistics for `name`."""
    return f"published {name} mean/std (xautodl)"


def _scan_folder(path: Path) -> dict:
    """{split: {class: [(file name, file path)]}} for the splits and class folders present."""
    tree = {}
    for split in SPLITS:
        if (path / split).is_dir():
            tree[split] = {
                c.name: [(f.name, str(f)) for f in c.iterdir() if f.name.lower().endswith(IMAGE_SUFFIXES)]
                for c in (path / split).iterdir() if c.is_dir()}
    return tree


def _scan_archive(path: Path) -> dict:
    """Like _scan_folder for a tar archive, with each image's bytes in place of its path."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            members = [(m.name, m.isdir(), m.offset_data, m.size) for m in tf if m.isdir() or m.isfile()]
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"cannot read archive {path}: {e}; expected a tar(.gz) with {_LAYOUT}") from e
    parts = [(tuple(p for p in n.split("/") if p not in ("", ".")), d, o, s) for n, d, o, s in members]
    tops = {p[0] for p, *_ in parts if p}
    strip = 1 if len(tops) == 1 and not tops & set(SPLITS) else 0  # one wrapping folder is fine
    tree = {}
    for p, is_dir, offset, size in parts:
        p = p[strip:]
        if not p or p[0] not in SPLITS:
            continue
        classes = tree.setdefault(p[0], {})
        if (len(p) == 2 and is_dir) or len(p) >= 3:
            files = classes.setdefault(p[1], [])
            if not is_dir and len(p) == 3 and p[2].lower().endswith(IMAGE_SUFFIXES):
                files.append((p[2], raw[offset: offset + size]))
    return tree


def _check_tree(tree: dict, where: Path) -> list[str]:
    """Return the sorted class names, or raise DataError for a missing split or empty class."""
    for split in SPLITS:
        if split not in tree:
            raise DataError(f"no {split}/ folder in {where}: {_LAYOUT}")
        if not tree[split]:
            raise DataError(f"no class folders in {where}/{split}: {_LAYOUT}")
        for c, files in sorted(tree[split].items()):
            if not files:
                raise DataError(f"empty class folder {split}/{c} in {where}: expected *.jpg or *.png images")
    train, test = set(tree["train"]), set(tree["test"])
    if train != test:
        raise DataError(f"class folders differ between train/ and test/ in {where}: only in train: "
                        f"{sorted(train - test)}, only in test: {sorted(test - train)}")
    return sorted(train)


def _decode_all(items: list, where: Path) -> np.ndarray:
    """Decode [(name, path or bytes)] to uint8[N, H, W, 3], in worker processes when there are many."""
    chunks = [items[i: i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    workers = _num_workers()
    images = None
    if len(items) >= _POOL_MIN_IMAGES and workers > 1:
        # spawn, not fork: the parent may already run JAX's threads. Spawned workers re-import the
        # main script, so scripts need the usual `if __name__ == "__main__":` guard; without it
        # (or from stdin) the pool breaks and decoding falls back to this process.
        ctx = multiprocessing.get_context("spawn")
        try:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                        initializer=_ignore_sigint) as pool:
                images = [a for chunk in pool.map(_decode_chunk, chunks) for a in chunk]
        except concurrent.futures.process.BrokenProcessPool as e:
            warnings.warn(f"image decoding workers failed ({e}); decoding in this process", stacklevel=2)
    if images is None:
        images = [a for chunk in chunks for a in _decode_chunk(chunk)]
    first = images[0].shape
    for (name, _), a in zip(items, images):
        if a.shape != first:
            raise DataError(f"{name} in {where} is {a.shape[0]}x{a.shape[1]}, expected {first[0]}x{first[1]} "
                            f"like {items[0][0]}: all images must have the same size")
    return np.stack(images)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent (which stops with one line), instead of each printing a
    traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _num_workers() -> int:
    """CPUs left idle by other processes (1-minute load average, less this one), at most 16.

    Measured on a 2-core VM kept busy by other jobs: two decoding workers took 43-50 s for CIFAR-10
    against 35-44 s in-process, so workers are only worth starting on idle cores.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cpus, cpus + 1 - round(busy), 16))


def _decode_chunk(items: list) -> np.ndarray | list[np.ndarray]:
    """Decode [(name, path or bytes)] to RGB uint8 arrays, stacked if they agree (runs in workers)."""
    out = []
    for name, ref in items:
        try:
            with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref,
                            formats=("JPEG", "PNG")) as im:
                out.append(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot decode {name}: {e}") from e
    return np.stack(out) if len({a.shape for a in out}) == 1 else out  # one array pickles fastest


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 NHWC images, in [0, 1] units (chunked to bound memory)."""
    total = np.zeros(3)
    squares = np.zeros(3)
    for i in range(0, len(images), 4096):
        x = images[i: i + 4096].reshape(-1, 3).astype(np.float64)
        total += x.sum(0)
        squares += (x * x).sum(0)
    count = images.size // 3
    mean = total / count
    return mean / 255.0, np.sqrt(np.maximum(squares / count - mean**2, 0.0)) / 255.0


# ------------------------------------------------------------------------------------------ TFDS


# TFDS downloads from its Google Cloud Storage mirror, else the dataset's own site (CIFAR's).
DOWNLOAD_HOSTS = (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443))


def _online(timeout: float = 3.0) -> bool:
    """Whether one of TFDS's download hosts accepts a connection within `timeout` seconds: offline,
    TFDS would retry its downloads for minutes before failing."""
    import socket
    for host in DOWNLOAD_HOSTS:
        try:
            socket.create_connection(host, timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def _prepared(tfds, tfds_name: str) -> bool:
    """Whether TFDS has `tfds_name` prepared on disk (True when that cannot be told: tfds.load
    then reports what is wrong)."""
    try:
        return bool(tfds.builder(tfds_name).is_prepared())
    except Exception:  # noqa: BLE001 -- any failure here is tfds.load's to report
        return True


def _load_tfds(name: str, max_per_class) -> Dataset:
    """Load a TFDS dataset whole into numpy (needs TensorFlow to download and prepare it)."""
    tfds_name, test_split, keep = _TFDS[name]
    try:
        import tensorflow_datasets as tfds

        if not _prepared(tfds, tfds_name) and not _online():
            raise DataError(f"{name!r} is not prepared in TFDS's data folder and no download host answers "
                            f"({', '.join(h for h, _ in DOWNLOAD_HOSTS)}): connect to the network once, or "
                            f"point --data / JAXNAS_DATA at an image folder or .tar.gz ({_LAYOUT})")
        (train, test), info = tfds.load(tfds_name, split=["train", test_split], batch_size=-1,
                                        as_supervised=True, with_info=True)
        train, test = tfds.as_numpy(train), tfds.as_numpy(test)
        class_names = tuple(info.features["label"].names)
    except DataError:
        raise
    except Exception as e:
        looked = (f" (no CIFAR-10 archive in $JAXNAS_DATA, at {SHARED_CIFAR10}, or at {CWD_CIFAR10[0]} or "
                  f"{CWD_CIFAR10[1]} from the working directory)" if name == "cifar10" else "")
        if isinstance(e, ModuleNotFoundError) and e.name:
            module = e.name.split(".")[0]
            fix = "jaxnas[tfds]" if module == "tensorflow" else module
            raise DataError(f"TFDS could not load {tfds_name!r} for {name!r}{looked}: module {module!r} is "
                            f"missing ({e}): pip install {fix}") from e
        raise DataError(f"TFDS could not prepare {tfds_name!r} for {name!r}{looked} ({type(e).__name__}: "
                        f"{e}); TFDS needs TensorFlow and network access: pip install jaxnas[tfds], or point "
                        f"JAXNAS_DATA / the spec at an image folder or .tar.gz ({_LAYOUT})") from e
    if keep is not None:
        class_names = class_names[:keep]
    splits = []
    for images, labels in (train, test):
        labels = np.asarray(labels, np.int32)
        idx = _first_per_class(labels, len(class_names), max_per_class)
        splits += [np.ascontiguousarray(np.asarray(images, np.uint8)[idx]), labels[idx]]
    mean, std = _STATS[name]
    return Dataset(name, *splits, len(class_names), class_names,
                   np.asarray(mean, np.float32), np.asarray(std, np.float32), _published(name))


def _first_per_class(labels: np.ndarray, num_classes: int, n) -> np.ndarray:
    """Sorted indices of the first `n` (all if None) examples of each class below `num_classes`."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(num_classes)]))
