"""The sectioned config: dotted overrides, one-line errors naming the right field, every section
validating its own fields, JSON round trips, presets."""
import dataclasses

import pytest

from jaxnas.config import PRESETS, RENAMED, SECTIONS, Config, all_fields, apply_overrides, flat, from_json


def test_dotted_overrides_reach_their_section():
    cfg = apply_overrides(PRESETS["tiny"], ["train.lr=0.1", "setn.select=sample", "seed=3", "nb201.N=2",
                                            "max_per_class=None", "train.steps_per_epoch=none",
                                            "train.augment=off"])
    assert (cfg.train.lr, cfg.setn.select, cfg.seed, cfg.nb201.N, cfg.max_per_class) == (0.1, "sample", 3, 2,
                                                                                         None)
    assert cfg.train.steps_per_epoch is None and cfg.train.augment is False
    assert cfg.nb201.C == PRESETS["tiny"].nb201.C  # the rest of the section is kept


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_every_field_of_the_flat_config_names_its_new_place(old):
    with pytest.raises(ValueError, match=f"config field '{old}' is now '{RENAMED[old]}'"):
        apply_overrides(Config(), [f"{old}=1"])
    assert RENAMED[old] in all_fields()


@pytest.mark.parametrize("item, message", [
    ("train.lrr=1", "unknown config field 'train.lrr'; did you mean 'train.lr'"),
    ("nb201.C=four", "nb201.C takes an integer, got 'four'"),
    ("train.augment=maybe", "train.augment takes true/false"),
    ("train.lr=nan", "train.lr must be a finite number"),
    ("setn.select=best", "setn.select must be one of topk, sample, got 'best'"),
    ("proxy.das_da=median", "proxy.das_da must be one of logdet, min_dist"),
    ("proxy.az_spectrum=float64", "proxy.az_spectrum must be one of reference, psd"),
    ("run.keep_checkpoints=1", "run.keep_checkpoints must be >= 2"),
    ("train.rounds=0", "train.rounds must be >= 1"),
    ("nb201.single_path_impl=fast", "nb201.single_path_impl must be one of auto, eager"),
    ("seed=-1", "seed must be >= 0"),
    ("lr", "expected section.field=value"),
])
def test_errors_are_one_line_and_name_the_field(item, message):
    with pytest.raises(ValueError, match=message) as err:
        apply_overrides(Config(), [item])
    assert "\n" not in str(err.value)


def test_set_validates_and_json_round_trips():
    with pytest.raises(ValueError, match="nb201.C must be >= 1"):
        Config().set({"nb201.C": 0})
    for preset in PRESETS.values():
        assert from_json(preset.to_json()) == preset
    cfg = Config().set({"train.rounds": 3, "eval.rank_probe": 10})
    assert flat(cfg)["train.rounds"] == 3 and len(flat(cfg)) == len(all_fields())
    with pytest.raises(ValueError, match="written by an older jaxnas"):
        from_json('{"C": 16, "lr": 0.1}')


def test_sections_are_frozen_and_self_describing():
    for name, section in SECTIONS.items():
        assert section.NAME == name and dataclasses.is_dataclass(section)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(getattr(Config(), name), dataclasses.fields(section)[0].name, None)


def test_method_presets_apply_the_methods_own_protocol():
    from jaxnas.config import preset
    from jaxnas.methods import pgnas_config
    paper = preset("paper", "pgnas", "hybrid")
    assert (paper.method, paper.space, paper.train.epochs, paper.train.lr, paper.pgnas.n_train) == (
        "pgnas", "hybrid", 1800, 0.01, 5e5)
    assert preset("paper", "rsps") == PRESETS["paper"]  # other methods: the preset as it is
    tiny = preset("tiny", "pgnas")
    assert tiny.nb201 == PRESETS["tiny"].nb201 and tiny.pgnas.candidates == pgnas_config.PRESETS["tiny"][
        "pgnas.candidates"]


def test_tuple_fields_take_comma_separated_numbers(monkeypatch):
    """A tuple field (e.g. the mobile space's `alloc`) from the command line: `1,3,3` or `(1.0,1.2)`."""
    from jaxnas import config as config_lib
    monkeypatch.setattr(config_lib, "_field_type", lambda key: "<class 'tuple'>")
    assert config_lib._parse_value("x.alloc", "1,3,3,0") == (1, 3, 3, 0)
    assert config_lib._parse_value("x.window", "(1.0,1.25)") == (1.0, 1.25)
    with pytest.raises(ValueError, match="comma-separated numbers"):
        config_lib._parse_value("x.alloc", "1,a")
    monkeypatch.undo()
    assert config_lib._parse_value("mobile.ops", "mb3t3,rec5t1") == ("mb3t3", "rec5t1")  # tuple[str, ...]
