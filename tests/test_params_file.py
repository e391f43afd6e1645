"""The shipped params.yaml and the steps' dataclasses agree: every section loads strictly, and the file's
values equal the dataclass defaults (so a step run without params.yaml behaves as `make run` does)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from productgan.params import load_section

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"

# section -> "module:Dataclass"
SECTIONS = {
    "ingest": "productgan.data.ingest:IngestParams",
    "preprocess": "productgan.data.preprocess:PreprocessParams",
    "train": "productgan.gan.recipes:TrainParams",
    "evaluate": "productgan.metrics.evaluate:EvaluateParams",
    "register": "productgan.registry.config:RegisterConfig",
    "generate": "productgan.api:GenerateParams",
    "studio": "productgan.studio.settings:StudioParams",
    "project": "productgan.project:ProjectParams",
    "pipeline": "pipelines.settings:PipelineParams",
}


def _cls(target: str) -> type:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_section_loads_and_equals_defaults(section: str) -> None:
    cls = _cls(SECTIONS[section])
    loaded = load_section(section, cls, PARAMS)
    assert dataclasses.asdict(loaded) == dataclasses.asdict(cls()), (
        f"params.yaml:{section} differs from {cls.__name__}'s defaults; keep them equal"
    )


@pytest.mark.parametrize("section", sorted(set(SECTIONS) - {"train"}))
def test_every_setting_is_stated_in_params_yaml(section: str) -> None:
    """Configuration is data: each field of a section's dataclass is written in params.yaml, where a user looks
    for it (train's recipes state only their differences, tested below)."""
    stated = set(yaml.safe_load(PARAMS.read_text()).get(section) or {})
    fields = {f.name for f in dataclasses.fields(_cls(SECTIONS[section]))}
    assert fields <= stated, f"params.yaml:{section} does not state {sorted(fields - stated)}"


def test_every_section_has_a_dataclass() -> None:
    sections = set(yaml.safe_load(PARAMS.read_text()))
    placeholders = {k for k, v in yaml.safe_load(PARAMS.read_text()).items() if v == {}}
    assert sections - placeholders <= set(SECTIONS), sections - placeholders - set(SECTIONS)


def test_default_recipe_states_only_its_differences_and_inherits_the_rest(tmp_path):
    """params.yaml's `default` recipe lists only what differs from `baseline`; reading a file, a recipe is
    the file's baseline, then its own typed differences, then what the file states for it."""
    from productgan.gan.recipes import BaselineRecipe, DefaultRecipe, TrainParams
    from productgan.lineage import params_hash

    shipped = yaml.safe_load(PARAMS.read_text())["train"]
    base, default = dataclasses.asdict(BaselineRecipe()), dataclasses.asdict(DefaultRecipe())
    assert set(shipped["default"]) == {k for k in default if default[k] != base[k]}

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"baseline": {"beta2": 0.99}, "default": {"lr_g": 0.001}}}))
    p = load_section("train", TrainParams, path)
    assert p.default.beta2 == 0.99 and p.default.lr_g == 0.001  # inherited, stated
    assert p.default.ema_kimg == DefaultRecipe().ema_kimg and p.default.lr_d == DefaultRecipe().lr_d  # typed
    assert p.baseline.lr_g == BaselineRecipe().lr_g

    # lineage hashes the recipes as training reads them: stating an inherited value changes nothing
    same = {"train": {"baseline": {"beta2": 0.99}, "default": {"beta2": 0.99}}}
    assert params_hash(same) == params_hash({"train": {"baseline": {"beta2": 0.99}}})
    assert params_hash(same) != params_hash({"train": {"baseline": {"beta2": 0.9}}})
