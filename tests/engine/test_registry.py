"""`jaxnas.registry`: every space and method by name, its config module and help line; the config
assembled from the components' own sections and presets; nothing of it imports JAX."""
import dataclasses
import importlib
import subprocess
import sys

import pytest

from jaxnas import registry
from jaxnas.config import PRESETS, SECTIONS, Config, preset


def test_the_config_the_registry_and_the_cli_parser_import_without_jax():
    code = ("import sys, jaxnas.cli, jaxnas.config; jaxnas.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(registry.SPACES))
def test_every_space_entry_loads_its_space_and_owns_a_section_named_after_it(name):
    from jaxnas.spaces import Space
    entry = registry.SPACES[name]
    space = entry.load()
    assert isinstance(space, Space) and space.name == name and entry.help
    if entry.config:
        section = importlib.import_module(entry.config).SECTION
        assert section.NAME == name and SECTIONS[name] is section
        assert isinstance(space.section(Config()), section)
        assert set(space.arch_fields) <= {f.name for f in dataclasses.fields(section)}


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_every_method_entry_loads_a_method_class(name):
    from jaxnas.methods import Method
    entry = registry.METHODS[name]
    method = entry.load()
    assert issubclass(method, Method) and entry.load() is method and entry.help
    if entry.config:
        module = importlib.import_module(entry.config)
        assert hasattr(module, "SECTION") or hasattr(module, "PRESETS")


def test_sections_keep_their_order_spaces_engine_methods_run():
    spaces, methods = ([importlib.import_module(m) for m in ms] for ms in registry.config_modules())
    own = [[m.SECTION.NAME for m in ms if hasattr(m, "SECTION")] for ms in (spaces, methods)]
    assert list(SECTIONS) == [*own[0], "train", "eval", *own[1], "run"]
    assert {"nb201", "hybrid", "setn", "abs", "pgnas", "proxy"} <= set(SECTIONS)


def test_a_preset_is_sized_on_every_space_and_a_train_preset_per_space():
    assert (PRESETS["tiny"].nb201.C, PRESETS["tiny"].nb201.N) == (8, 1)
    assert (PRESETS["tiny"].hybrid.C, PRESETS["tiny"].hybrid.blocks) == (8, 1)
    assert PRESETS["paper"] == Config()
    train = PRESETS["train-tiny"]
    assert train.method == "train" and train.nb201.affine and train.nb201.track_running_stats
    assert (train.hybrid.C, train.hybrid.blocks) == (8, 1)
    assert PRESETS["train-paper"].nb201.affine and PRESETS["train-paper"].hybrid == Config().hybrid


def test_a_method_preset_may_differ_per_space(monkeypatch):
    from jaxnas.methods import pgnas_config
    monkeypatch.setitem(pgnas_config.PRESETS, "tiny/hybrid", {"pgnas.candidates": 7})
    assert preset("tiny", "pgnas", "hybrid").pgnas.candidates == 7
    nb201 = preset("tiny", "pgnas", "nb201")
    assert nb201.pgnas.candidates == pgnas_config.PRESETS["tiny"]["pgnas.candidates"]


@pytest.mark.parametrize("name", sorted(registry.SPACES))
def test_every_space_supernet_follows_the_call_protocol(name):
    """The weight-sharing network and the HyperNet-generated one (SMASH), where a space builds them."""
    from jaxnas.nn.supernet import follows_protocol
    space = registry.SPACES[name].load()
    builders = [b for b in ("build_supernet", "build_hypernet") if callable(getattr(space, b, None))]
    assert builders, f"{name} builds no network"
    cfg = PRESETS["tiny"].set({"mobile.alloc": (0,) * 6, "mobile.ops": ("mb3t3",)})  # 6 cells, 1 op
    for builder in builders:
        assert follows_protocol(getattr(space, builder)(space.section(cfg), 10, seed=0)), builder


def test_the_protocol_check_refuses_a_call_that_does_not_follow_it():
    from jaxnas.nn.supernet import follows_protocol

    class Wrong:
        def __call__(self, x, train, arch, forward_only=False):
            return x

    class NoDefault:
        def __call__(self, x, arch, train, tap, *, forward_only=False):
            return x

    assert not follows_protocol(Wrong()) and not follows_protocol(NoDefault())


@pytest.mark.parametrize("argv", [["score", "--space", "hybrid"],
                                  ["search", "--method", "naswot", "--space", "hybrid"]])
def test_proxies_on_a_space_they_cannot_read_are_refused_up_front(argv, tmp_path, capsys):
    from jaxnas.cli import main
    assert main([*argv, "--out", str(tmp_path / "r"), "--preset", "tiny"]) == 2
    assert "space 'hybrid' does not" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_supernet_method_refuses_a_space_that_builds_no_networks():
    from jaxnas.methods import get
    from jaxnas.spaces import get as get_space

    class NoNetworks(type(get_space("nb201"))):
        name = "plain"
        build_supernet = None

    with pytest.raises(ValueError, match="space 'plain' builds none"):
        get("rsps").check(PRESETS["tiny"], NoNetworks())
