"""What every config section shares: a frozen dataclass with a `NAME` and a `check()` that raises
ValueError naming the field. The engine's sections live in `jaxnas.config`; a space's or a method's
lives in its own JAX-free config module (`jaxnas.registry` names it), e.g.
`jaxnas/spaces/nb201/config.py`, which holds

    SECTION   the section's dataclass (optional)
    PRESETS   {preset name: {"section.field": value}} applied on top of jaxnas.config's presets; a
              method may key one space's differences as "name/space" (applied after "name")
    SPACE_PRESETS  (a space's module, optional) {preset name: overrides} applied only to runs on
              that space, after PRESETS (e.g. its `jaxnas train` recipe: `train-paper`)
    RENAMED   {old flat field: "section.field"} (optional, the fields of jaxnas 0.1)
"""
from __future__ import annotations


def check_positive(section, names):
    for name in names:
        if getattr(section, name) < 1:
            raise ValueError(f"{section.NAME}.{name} must be >= 1, got {getattr(section, name)}")


def check_choice(section, name, choices):
    if getattr(section, name) not in choices:
        raise ValueError(f"{section.NAME}.{name} must be one of {', '.join(choices)}, got "
                         f"{getattr(section, name)!r}")
