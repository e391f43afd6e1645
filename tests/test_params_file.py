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


def test_every_section_has_a_dataclass() -> None:
    sections = set(yaml.safe_load(PARAMS.read_text()))
    placeholders = {k for k, v in yaml.safe_load(PARAMS.read_text()).items() if v == {}}
    assert sections - placeholders <= set(SECTIONS), sections - placeholders - set(SECTIONS)
