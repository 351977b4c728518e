"""jaxnas.data: loading image folders / archives / TFDS, the cache, errors, splits and augmentation."""
import os
import socket
import sys
import tarfile
import types
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from jaxnas.data import (
    DataError,
    DeviceData,
    augment,
    epoch_order,
    load,
    normalize,
    resolve,
    search_split,
    sources,
)

H, W = 6, 8  # not square, so a swapped axis shows
CLASSES = ("zebra", "apple", "mango")  # created out of order: labels must follow sorted names


def _image(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_folder(root, per_class=(3, 2)):
    """Write train/ and test/ PNGs (names deliberately not in creation order); return expected arrays."""
    expected = {}
    for split, n in zip(("train", "test"), per_class):
        images, labels = [], []
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in reversed(range(n)):
                Image.fromarray(_image(zlib.crc32(f'{split}/{c}/{i}'.encode()))).save(
                    root / split / c / f"{i:03d}.png")
            (root / split / c / "notes.txt").write_text("not an image")
        for label, c in enumerate(sorted(CLASSES)):
            for i in range(n):
                images.append(_image(zlib.crc32(f'{split}/{c}/{i}'.encode())))
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels, np.int32))
    return expected


def make_tgz(folder, path, wrap=True):
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname=folder.name if wrap else ".")
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "toy"
    return root, make_folder(root)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def assert_matches(ds, expected):
    np.testing.assert_array_equal(ds.train_images, expected["train"][0])
    np.testing.assert_array_equal(ds.train_labels, expected["train"][1])
    np.testing.assert_array_equal(ds.test_images, expected["test"][0])
    np.testing.assert_array_equal(ds.test_labels, expected["test"][1])
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32


# ------------------------------------------------------------------------------------------ sources


def test_folder_roundtrip_exact(folder, cache):
    root, expected = folder
    ds = load(root, cache_dir=cache)
    assert_matches(ds, expected)
    assert ds.name == "toy"
    assert ds.class_names == tuple(sorted(CLASSES)) and ds.num_classes == 3
    assert ds.train_images.shape == (9, H, W, 3) and ds.test_images.shape == (6, H, W, 3)
    x = expected["train"][0].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(ds.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.std, x.std(0), rtol=1e-5)
    assert ds.mean.dtype == ds.std.dtype == np.float32


@pytest.mark.parametrize("wrap", [True, False])
def test_targz_matches_folder(folder, cache, tmp_path, wrap):
    root, expected = folder
    ds = load(make_tgz(root, tmp_path / "toy.tar.gz", wrap), cache_dir=cache)
    assert_matches(ds, expected)
    assert ds.name == "toy" and ds.class_names == tuple(sorted(CLASSES))


def test_grayscale_becomes_rgb(folder, cache):
    root, expected = folder
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    Image.fromarray(gray, mode="L").save(root / "train" / "apple" / "000.png")
    ds = load(root, cache_dir=cache)
    np.testing.assert_array_equal(ds.train_images[0], np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(ds.train_images[1:], expected["train"][0][1:])


def test_worker_pool_decodes_the_same(folder, cache, tmp_path, monkeypatch, recwarn):
    root, expected = folder
    monkeypatch.setattr(sources, "_POOL_MIN_IMAGES", 1)
    monkeypatch.setattr(sources, "_CHUNK", 4)
    monkeypatch.setattr(sources, "_num_workers", lambda: 2)
    assert_matches(load(root, cache_dir=cache), expected)
    (root / "test" / "zebra" / "001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode test/zebra/001.png"):
        load(root, cache_dir=cache)
    assert not [w for w in recwarn if "workers failed" in str(w.message)]


def test_max_per_class_keeps_first_files(folder, cache, tmp_path):
    root, expected = folder
    for src in (root, make_tgz(root, tmp_path / "toy.tar.gz")):
        ds = load(src, cache_dir=cache, max_per_class=1)
        np.testing.assert_array_equal(ds.train_labels, [0, 1, 2])
        np.testing.assert_array_equal(ds.train_images, expected["train"][0][[0, 3, 6]])  # the 000.png of each
        np.testing.assert_array_equal(ds.test_images, expected["test"][0][[0, 2, 4]])


def test_cache_hit_skips_decoding(folder, cache, monkeypatch):
    root, expected = folder
    first = load(root, cache_dir=cache)
    files = sorted(os.listdir(cache))
    assert len(files) == 1 and files[0].endswith(".npz")

    def fail(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(sources, "_load_images", fail)
    second = load(root, cache_dir=cache)
    assert_matches(second, expected)
    assert second.class_names == first.class_names and second.name == first.name
    np.testing.assert_array_equal(second.mean, first.mean)
    assert second.norm_source == first.norm_source == "computed from the 9 training images"
    with pytest.raises(AssertionError, match="despite the cache"):
        load(root, cache_dir=cache, max_per_class=2)  # a different key misses


def test_cache_invalidated_by_changed_source(folder, cache):
    root, _ = folder
    load(root, cache_dir=cache)
    Image.fromarray(_image(7)).save(root / "train" / "apple" / "999.png")
    ds = load(root, cache_dir=cache)
    assert ds.train_images.shape[0] == 10
    np.testing.assert_array_equal(ds.train_images[3], _image(7))
    assert len(os.listdir(cache)) == 2 and not [f for f in os.listdir(cache) if f.endswith(".tmp")]
    os.rename(root / "train" / "zebra", root / "train" / "aardvark")  # same files, new class order
    os.rename(root / "test" / "zebra", root / "test" / "aardvark")
    assert load(root, cache_dir=cache).class_names == ("aardvark", "apple", "mango")


def test_cache_dir_from_env_and_corrupt_cache_rebuilt(folder, cache, monkeypatch):
    root, expected = folder
    monkeypatch.setenv("JAXNAS_CACHE", str(cache))
    load(root)
    (path,) = cache.iterdir()
    path.write_bytes(b"truncated garbage")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        ds = load(root)
    assert_matches(ds, expected)
    assert np.load(path)["train_images"].shape == (9, H, W, 3)  # rewritten whole


def _error_case(root, case):
    """Break a good folder in one way; return the spec to load."""
    if case == "no train":
        os.rename(root / "train", root / "training")
    elif case == "no test":
        os.rename(root / "test", root / "val")
    elif case == "no classes":
        for c in CLASSES:
            for f in (root / "test" / c).iterdir():
                f.unlink()
            (root / "test" / c).rmdir()
    elif case == "empty class":
        for f in (root / "train" / "mango").iterdir():
            f.unlink()
    elif case == "mixed size":
        Image.fromarray(_image(1, H + 1, W)).save(root / "test" / "zebra" / "001.png")
    elif case == "class mismatch":
        os.rename(root / "test" / "mango", root / "test" / "melon")
    elif case == "undecodable":
        (root / "train" / "apple" / "001.png").write_bytes(b"not a png")
    return root


ERRORS = {
    "no train": "no train/ folder in .*expected train/<class>/\\*.jpg and test/<class>/\\*.jpg",
    "no test": "no test/ folder in",
    "no classes": "no class folders in .*test",
    "empty class": "empty class folder train/mango in .*expected \\*.jpg or \\*.png",
    "mixed size": "test/zebra/001.png in .* is 7x8, expected 6x8 like train/apple/000.png",
    "class mismatch": "only in train: \\['mango'\\], only in test: \\['melon'\\]",
    "undecodable": "cannot decode train/apple/001.png",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
@pytest.mark.parametrize("as_archive", [False, True])
def test_malformed_folder_raises(folder, cache, tmp_path, case, as_archive):
    root, _ = folder
    spec = _error_case(root, case)
    if as_archive:
        spec = make_tgz(root, tmp_path / "toy.tar.gz", wrap=False)
    with pytest.raises(DataError, match=ERRORS[case]):
        load(spec, cache_dir=cache)
    assert not cache.exists() or not list(cache.iterdir())  # nothing half-written


def test_bad_specs_raise(tmp_path, cache, monkeypatch):
    assert issubclass(DataError, ValueError)
    with pytest.raises(DataError, match="unknown dataset 'cifar11': expected one of cifar10, cifar100, "
                                        "imagenet16-120.*no such path"):
        load("cifar11", cache_dir=cache)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="is not a folder or"):
        load(tmp_path / "notes.txt", cache_dir=cache)
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="cannot read archive .*broken.tar.gz"):
        load(tmp_path / "broken.tar.gz", cache_dir=cache)
    monkeypatch.setenv("JAXNAS_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="JAXNAS_DATA=.*missing does not exist"):
        resolve("cifar10")
    with pytest.raises(DataError, match="max_per_class"):
        load(tmp_path, cache_dir=cache, max_per_class=0)


def test_resolve(tmp_path, monkeypatch, cifar10_tgz):
    monkeypatch.delenv("JAXNAS_DATA", raising=False)
    assert resolve("cifar10") == str(cifar10_tgz.resolve()) == str(sources.SHARED_CIFAR10.resolve())
    assert resolve("cifar100") == "tfds:cifar100"
    assert resolve("imagenet16-120") == "tfds:imagenet_resized/16x16"
    monkeypatch.setenv("JAXNAS_DATA", str(tmp_path))
    assert resolve("cifar10") == str(tmp_path.resolve())
    monkeypatch.chdir(tmp_path.parent)
    assert resolve(tmp_path.name) == str(tmp_path.resolve())
    monkeypatch.setattr(sources, "SHARED_CIFAR10", tmp_path / "absent.tar.gz")
    monkeypatch.delenv("JAXNAS_DATA")
    assert resolve("cifar10") == "tfds:cifar10"


def test_resolve_cifar10_from_working_directory(tmp_path, monkeypatch):
    """An installed jaxnas has no ../shared beside its source: look in ./shared, then ../shared."""
    monkeypatch.delenv("JAXNAS_DATA", raising=False)
    monkeypatch.setattr(sources, "SHARED_CIFAR10", tmp_path / "absent.tar.gz")
    archive = tmp_path / "project" / sources.CWD_CIFAR10[0]
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    (tmp_path / "project" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert resolve("cifar10") == str(archive.resolve())
    monkeypatch.chdir(tmp_path / "project" / "sub")
    assert resolve("cifar10") == str(archive.resolve())  # ../shared
    own = tmp_path / "project" / "sub" / sources.CWD_CIFAR10[0]
    own.parent.mkdir(parents=True)
    own.write_bytes(b"")
    assert resolve("cifar10") == str(own.resolve())  # ./shared before ../shared
    monkeypatch.setattr(sources, "SHARED_CIFAR10", archive)
    assert resolve("cifar10") == str(archive.resolve())  # the source tree's before the working directory's
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "SHARED_CIFAR10", tmp_path / "absent.tar.gz")
    assert resolve("cifar10") == "tfds:cifar10"


def make_cifar_folder(root, classes, size=32, per_class=(2, 1)):
    """train/ and test/ folders of random size x size PNGs, one folder per class name."""
    for split, n in zip(("train", "test"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_image(zlib.crc32(f"{split}/{c}/{i}".encode()), size, size)).save(
                    root / split / c / f"{i}.png")
    return root


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_normalisation_follows_the_data_not_the_spec(tmp_path, cache):
    """CIFAR-10's class names at 32x32 get the published stats by any path; other data its own stats."""
    ds = load(make_cifar_folder(tmp_path / "mine", CIFAR10_CLASSES), cache_dir=cache)
    assert ds.name == "cifar10" and ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(ds.mean, np.float32([0.4914, 0.4822, 0.4465]))
    np.testing.assert_array_equal(ds.std, np.float32([0.2470, 0.2435, 0.2616]))
    assert ds.norm_source == "published cifar10 mean/std (xautodl)"
    assert load(tmp_path / "mine", cache_dir=cache).norm_source == ds.norm_source  # through the cache
    for other, classes, size in (("renamed", ("aeroplane", *CIFAR10_CLASSES[1:]), 32),
                                 ("small", CIFAR10_CLASSES, 16)):
        ds = load(make_cifar_folder(tmp_path / other, classes, size), cache_dir=cache)
        x = ds.train_images.reshape(-1, 3) / 255.0
        assert ds.name == other and ds.norm_source == "computed from the 20 training images"
        np.testing.assert_allclose(ds.mean, x.mean(0), rtol=1e-5)
        np.testing.assert_allclose(ds.std, x.std(0), rtol=1e-5)


def test_cifar100_detected_by_its_class_names(tmp_path, cache):
    classes = sources._CIFAR_CLASSES["cifar100"]
    assert len(set(classes)) == 100 and list(classes) == sorted(classes)
    ds = load(make_cifar_folder(tmp_path / "c100", classes, per_class=(1, 1)), cache_dir=cache)
    assert ds.name == "cifar100" and ds.num_classes == 100
    np.testing.assert_array_equal(ds.mean, np.float32([0.5071, 0.4865, 0.4409]))
    assert ds.norm_source == "published cifar100 mean/std (xautodl)"


def test_cifar10_by_name_or_by_path_is_one_dataset(tmp_path, cache, monkeypatch):
    """--data cifar10 and --data <the archive it resolves to> give identical data, stats and cache."""
    folder = make_cifar_folder(tmp_path / "cifar10-jpeg", CIFAR10_CLASSES)
    archive = make_tgz(folder, tmp_path / "cifar10-jpeg.tar.gz")
    monkeypatch.delenv("JAXNAS_DATA", raising=False)
    monkeypatch.setattr(sources, "SHARED_CIFAR10", archive)
    for spec in (archive, folder):
        if spec == folder:
            monkeypatch.setenv("JAXNAS_DATA", str(folder))
        by_name = load("cifar10", cache_dir=cache, max_per_class=1)
        by_path = load(spec, cache_dir=cache, max_per_class=1)
        assert by_name.name == by_path.name == "cifar10" and by_name.norm_source == by_path.norm_source
        for field in ("train_images", "train_labels", "test_images", "test_labels", "mean", "std"):
            np.testing.assert_array_equal(getattr(by_name, field), getattr(by_path, field))
    assert len(list(cache.iterdir())) == 2  # one cache file per source, whatever the spelling


def _fake_tfds(monkeypatch, calls, error=None):
    """Install a stand-in `tensorflow_datasets` with 150 classes, 3 train / 2 test images per class."""
    def fake_load(name, split, batch_size, as_supervised, with_info):
        calls.append((name, tuple(split)))
        if error:
            raise error
        out = []
        for n in (3, 2):
            labels = np.tile(np.arange(150), n)[::-1].copy()
            out.append((np.broadcast_to(labels.astype(np.uint8)[:, None, None, None], (len(labels), 4, 4, 3)),
                        labels.astype(np.int64)))
        info = types.SimpleNamespace(
            features={"label": types.SimpleNamespace(names=[f"c{i}" for i in range(150)])})
        return out, info

    module = types.ModuleType("tensorflow_datasets")
    module.load, module.as_numpy = fake_load, lambda x: x
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)


def test_tfds_imagenet16_120_keeps_first_120_classes(monkeypatch, cache):
    calls = []
    _fake_tfds(monkeypatch, calls)
    ds = load("imagenet16-120", cache_dir=cache, max_per_class=2)
    assert calls == [("imagenet_resized/16x16", ("train", "validation"))]
    assert ds.num_classes == 120 and ds.class_names[-1] == "c119"
    assert ds.train_labels.max() == 119 and np.bincount(ds.train_labels).tolist() == [2] * 120
    assert len(ds.test_labels) == 240
    np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0], ds.train_labels)  # images follow labels
    np.testing.assert_allclose(ds.mean, [0.4811, 0.4575, 0.4078])
    assert ds.norm_source == "published imagenet16-120 mean/std (xautodl)"
    assert load("imagenet16-120", cache_dir=cache, max_per_class=2).num_classes == 120
    assert len(calls) == 1  # second load came from the cache


def test_tfds_failure_is_a_data_error(monkeypatch, cache):
    _fake_tfds(monkeypatch, [], error=ImportError("No module named 'tensorflow'"))
    with pytest.raises(DataError,
                       match="cifar100.*No module named 'tensorflow'.*pip install jaxnas\\[tfds\\]"):
        load("cifar100", cache_dir=cache)


def test_tfds_missing_module_is_named(monkeypatch, cache, tmp_path):
    """A module TFDS imports lazily is named with its pip install, not blamed on TensorFlow/network."""
    missing = ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")
    _fake_tfds(monkeypatch, [], error=missing)
    with pytest.raises(DataError,
                       match="module 'importlib_resources' is missing.*pip install importlib_resources$"):
        load("cifar100", cache_dir=cache)
    _fake_tfds(monkeypatch, [], error=ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow"))
    with pytest.raises(DataError, match="module 'tensorflow' is missing.*pip install jaxnas\\[tfds\\]$"):
        load("cifar100", cache_dir=cache)
    monkeypatch.delenv("JAXNAS_DATA", raising=False)
    monkeypatch.setattr(sources, "SHARED_CIFAR10", tmp_path / "absent.tar.gz")
    monkeypatch.chdir(tmp_path)
    _fake_tfds(monkeypatch, [], error=OSError("network unreachable"))
    with pytest.raises(DataError, match="no CIFAR-10 archive in \\$JAXNAS_DATA, at .*absent.tar.gz, or at "
                                        "shared/data/.* or \\.\\./shared/data/.* from the working directory.*"
                                        "network unreachable.*needs TensorFlow and network access"):
        load("cifar10", cache_dir=cache)


def test_tfds_imports_what_load_needs(tmp_path, monkeypatch):
    """tensorflow_datasets' lazily imported modules are installed, and a builder is made offline."""
    import importlib_resources  # noqa: F401 -- imported lazily by tfds' dataset_builder
    import tensorflow_datasets as tfds
    import termcolor  # noqa: F401

    def no_network(*args):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    builder = tfds.builder("cifar10", data_dir=tmp_path)
    assert builder.name == "cifar10" and builder.info.features["label"].num_classes == 10


@pytest.mark.slow
def test_real_cifar10_archive(cifar10_tgz, cache, monkeypatch):
    monkeypatch.setenv("JAXNAS_DATA", str(cifar10_tgz))
    ds = load("cifar10", cache_dir=cache, max_per_class=20)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                              "ship", "truck")
    assert ds.train_images.shape == (200, 32, 32, 3) and ds.test_images.shape == (200, 32, 32, 3)
    assert np.bincount(ds.train_labels).tolist() == [20] * 10 == np.bincount(ds.test_labels).tolist()
    np.testing.assert_allclose(ds.mean, [0.4914, 0.4822, 0.4465])
    assert 0.3 < ds.train_images.mean() / 255 < 0.7 and ds.train_images.std() > 30  # real photos


# ----------------------------------------------------------------------------------------- pipeline


def test_search_split():
    w, a = search_split(101, seed=0)
    assert w.dtype == a.dtype == np.int32 and len(w) == 50 and len(a) == 51
    assert not set(w) & set(a) and sorted(np.concatenate([w, a])) == list(range(101))
    w2, a2 = search_split(101, seed=0)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(w, search_split(101, seed=1)[0])
    assert 10 < np.sum(w < 50) < 40  # a random half, not the first half
    w, a = search_split(50000, seed=0, held_out=0.1)  # SMASH's 5k of 50k
    assert (len(w), len(a)) == (45000, 5000) and not set(w[:100]) & set(a)
    np.testing.assert_array_equal(search_split(101, 0, 0.5)[0], search_split(101, 0)[0])
    with pytest.raises(ValueError, match="leaves 0 of 3"):
        search_split(3, 0, held_out=0.9)



def test_search_split_from_the_end_holds_out_each_class_tail():
    """SMASH's split: the last fraction of every class in dataset order, whatever the seed."""
    labels = np.repeat(np.arange(4), 30)[np.argsort(np.tile(np.arange(30), 4), kind="stable")]  # interleaved
    w, a = search_split(len(labels), 0, 0.1, labels, "end")
    assert len(a) == 12 and np.array_equal(np.bincount(labels[a]), [3, 3, 3, 3])
    for c in range(4):
        members = np.flatnonzero(labels == c)
        np.testing.assert_array_equal(a[labels[a] == c], members[-3:])
    assert np.array_equal(np.sort(np.concatenate([w, a])), np.arange(len(labels)))
    np.testing.assert_array_equal(search_split(len(labels), 7, 0.1, labels, "end")[1], a)

def test_epoch_order():
    order = epoch_order(jax.random.key(0), 103, 10)
    assert order.shape == (10, 10) and order.dtype == jnp.int32
    flat = np.asarray(order).ravel()
    assert len(set(flat)) == 100 and flat.min() >= 0 and flat.max() < 103
    assert not np.array_equal(flat, np.sort(flat))
    assert not np.array_equal(order, epoch_order(jax.random.key(1), 103, 10))
    np.testing.assert_array_equal(order, epoch_order(jax.random.key(0), 103, 10))
    with pytest.raises(ValueError, match="batch_size"):
        epoch_order(jax.random.key(0), 5, 10)


def test_normalize():
    images = np.array([[[[0, 128, 255]]]], np.uint8)
    out = normalize(images, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out.dtype == jnp.float32 and out.shape == (1, 1, 1, 3)
    np.testing.assert_allclose(out[0, 0, 0], [-2.0, (128 / 255 - 0.5) / 0.5, 0.5], atol=1e-6)


def _all_crops(image, pad=4):
    """Every image augment may produce from `image`: each shift, flipped or not."""
    h, w, _ = image.shape
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    crops = [padded[dy: dy + h, dx: dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    return crops + [c[:, ::-1] for c in crops]


AUG_SHAPE = (64, 12, 10, 3)  # one shape for every augment call below: one compile


def test_augment_is_a_random_pad_crop_flip():
    images = np.random.default_rng(0).integers(1, 256, AUG_SHAPE, dtype=np.uint8)  # no zeros
    out = np.asarray(augment(jax.random.key(0), images))
    assert out.shape == images.shape and out.dtype == np.uint8
    which = []
    for image, o in zip(images, out):
        matches = [i for i, c in enumerate(_all_crops(image)) if np.array_equal(c, o)]
        assert matches, "output is not a pad-crop(-flip) of its input"
        which.append(matches[0])
    which = np.array(which)
    assert (which >= 81).any() and (which < 81).any()  # some flipped, some not
    assert len(set(which % 81)) > 10  # many different shifts
    np.testing.assert_array_equal(out, augment(jax.random.key(0), images))  # same key, same result
    assert not np.array_equal(out, augment(jax.random.key(1), images))


def test_augment_pads_with_zeros_and_jits_under_vmap():
    images = jnp.full(AUG_SHAPE, 255, jnp.uint8)
    out = np.asarray(augment(jax.random.key(3), images))
    rows = (out == 0).all(axis=(2, 3)).sum(axis=1)  # all-zero rows = vertical shift
    cols = (out == 0).all(axis=(1, 3)).sum(axis=1)
    assert rows.max() == 4 and cols.max() == 4 and (rows == 0).any() and (cols == 0).any()
    np.testing.assert_array_equal((out == 0).all(-1).sum(axis=(1, 2)), 10 * rows + 12 * cols - rows * cols)
    keys = jax.random.split(jax.random.key(0), 2)
    batched = jax.jit(jax.vmap(augment, in_axes=(0, None)))(keys, images)
    assert batched.shape == (2, *AUG_SHAPE)
    np.testing.assert_array_equal(batched[1], augment(keys[1], images))


@pytest.mark.parametrize("spec", [P(), P("data")])
def test_device_data_batches_on_device(spec):
    mesh = jax.make_mesh((8,), ("data",))
    images = np.arange(16 * 2 * 2 * 3, dtype=np.uint8).reshape(16, 2, 2, 3)
    labels = np.arange(16) % 5
    data = DeviceData.put(images, labels, NamedSharding(mesh, spec))
    assert len(data) == 16 and data.images.sharding.spec == spec and data.labels.dtype == jnp.int32
    idx = np.array([3, 15, 0, 7, 7, 1, 2, 9], np.int32)
    batch_sharding = NamedSharding(mesh, P("data"))
    x, y = jax.jit(lambda d, i: d.batch(i, batch_sharding))(data, jax.device_put(idx, batch_sharding))
    assert x.sharding.spec[0] == "data" and y.sharding.spec[0] == "data"
    np.testing.assert_array_equal(x, images[idx])
    np.testing.assert_array_equal(y, labels[idx])
    if spec == P():  # replicated data and unsharded indices need no out_sharding
        np.testing.assert_array_equal(data.batch(jnp.asarray(idx))[0], images[idx])
