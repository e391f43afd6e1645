"""One source for each setting: the steps' dataclasses hold the defaults, the recipes are rows of overrides,
params.yaml states what a user changes, and params.effective.yaml (what DVC tracks) is generated from them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from productgan.gan.recipes import RECIPES, TrainParams
from productgan.params import SECTIONS, ParamsError, effective, load_section, resolve, section_class

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
EFFECTIVE = REPO / "params.effective.yaml"
# every section: the library's, and the orchestrator's own (which the core never imports)
ALL_SECTIONS = {**SECTIONS, "pipeline": "pipelines.settings:PipelineParams"}


def _cls(target: str) -> type:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def test_every_section_of_params_yaml_has_a_dataclass_and_loads() -> None:
    shipped = yaml.safe_load(PARAMS.read_text())
    assert set(shipped) == set(ALL_SECTIONS)
    for name, target in ALL_SECTIONS.items():
        load_section(name, _cls(target), PARAMS)


def _leaves(doc: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in doc.items():
        nested = isinstance(value, dict) and value
        out.update(_leaves(value, f"{prefix}{key}.") if nested else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("section", sorted(ALL_SECTIONS))
def test_params_yaml_states_no_default(section: str) -> None:
    """A default lives in its dataclass only: params.yaml stating the same value would be a second copy."""
    cls = _cls(ALL_SECTIONS[section])
    stated = _leaves(yaml.safe_load(PARAMS.read_text())[section] or {})
    defaults = _leaves(dataclasses.asdict(cls()))
    same = sorted(k for k, v in stated.items() if defaults.get(k) == v)
    assert not same, f"params.yaml:{section} restates the defaults of {same}; delete them there"


def test_the_effective_settings_file_is_current() -> None:
    """params.effective.yaml is what DVC tracks: regenerated from the defaults and params.yaml, it must equal
    the committed file, so a changed default shows in `dvc params diff` and re-runs the stages it concerns."""
    written = {name: resolved.values() for name, resolved in effective(yaml.safe_load(PARAMS.read_text())).items()}
    assert yaml.safe_load(EFFECTIVE.read_text()) == written, (
        "params.effective.yaml is stale: run `productgan params write` (or `dvc repro settings`) and commit it")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_recipe_is_a_row_of_overrides_that_each_change_a_default(recipe: str) -> None:
    defaults = dataclasses.asdict(TrainParams())
    row = RECIPES[recipe]
    assert set(row) <= set(defaults) - {"recipe"}, f"recipe {recipe} names unknown knobs"
    assert all(defaults[k] != v for k, v in row.items()), f"recipe {recipe} restates defaults"
    p = TrainParams.of_recipe(recipe)
    assert p.recipe == recipe and {k: getattr(p, k) for k in row} == row
    assert load_section("train", TrainParams, PARAMS, overrides={"recipe": recipe}) == p


def test_layers_default_recipe_file_override_and_their_sources(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"recipe": "article_wgan_gp", "lr_g": 0.001, "n_critic": 3}}))
    r = resolve("train", TrainParams, yaml.safe_load(path.read_text())["train"], {"n_critic": 2}, str(path))
    p, src = r.settings, r.sources
    assert (p.arch, p.loss, p.lr_g, p.lr_d, p.n_critic, p.steps) == ("mlp", "wgan-gp", 0.001, 1e-4, 2, 69000)
    assert (src["arch"], src["lr_g"], src["lr_d"], src["n_critic"], src["steps"], src["recipe"]) == (
        "recipe article_wgan_gp", str(path), "recipe article_wgan_gp", "override", "default", str(path))
    # the file wins over the recipe whatever the recipe: a knob stated once applies to every recipe
    assert load_section("train", TrainParams, path, overrides={"recipe": "baseline"}).lr_g == 0.001


def test_a_nested_key_keeps_the_other_nested_defaults(tmp_path: Path) -> None:
    from pipelines.settings import PipelineParams, pipeline_params

    p = pipeline_params({"pipeline": {"resources": {"train": {"cpu": "8"}}, "checkpoints": {"size": "5Gi"}}})
    defaults = PipelineParams()
    assert p.resources.train.cpu == "8" and p.resources.train.memory == defaults.resources.train.memory == "16Gi"
    assert p.resources.ingest == defaults.resources.ingest and p.checkpoints.size == "5Gi"
    assert p.checkpoints.storage_class == defaults.checkpoints.storage_class
    sources = resolve("pipeline", PipelineParams, {"resources": {"train": {"cpu": "8"}}}, where="f").sources
    assert (sources["resources.train.cpu"], sources["resources.train.memory"]) == ("f", "default")


def test_one_check_style_one_error_naming_file_key_and_where_the_value_came_from(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"g_topk": 0.0}, "evaluate": {"fid_n": 1}, "project": {"lr": 0}}))
    for section, key in (("train", "g_topk"), ("evaluate", "fid_n"), ("project", "lr")):
        with pytest.raises(ParamsError, match=rf"^{path}:{section}\.{key}: .*fix it in params.yaml"):
            load_section(section, section_class(section), path)
    with pytest.raises(ParamsError, match=rf"^{path}:train\.steps: must be >= 0.*fix the command-line option"):
        load_section("train", TrainParams, path, overrides={"steps": -1, "g_topk": 0.5})
    with pytest.raises(ParamsError, match=r"train.recipe: unknown recipe 'fancy'; use one of baseline, default"):
        load_section("train", TrainParams, path, overrides={"recipe": "fancy"})
    with pytest.raises(ParamsError, match=r"^loss: use one of"):  # built in code: no file to name
        TrainParams(loss="wasserstein")


def test_params_show_prints_every_setting_with_its_source(tmp_path: Path) -> None:
    from productgan.cli import cli

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"max_minutes": 5}}))
    res = CliRunner().invoke(cli, ["--params", str(path), "params", "show", "--section", "train", "--recipe",
                                   "baseline"])
    assert res.exit_code == 0, res.output
    lines = {line.split(":")[0].strip(): line for line in res.output.splitlines()[1:]}
    assert set(lines) == {f.name for f in dataclasses.fields(TrainParams)}
    assert lines["max_minutes"].endswith(f"# {path}") and "5.0" in lines["max_minutes"]
    assert lines["g_channels"].endswith("# recipe baseline") and " 64 " in lines["g_channels"]
    assert lines["recipe"].endswith("# override") and lines["steps"].endswith("# default")
    shown = yaml.safe_load(res.output)  # the output is YAML (sources are comments)
    assert shown["train"] == dataclasses.asdict(load_section("train", TrainParams, path, {"recipe": "baseline"}))


def test_params_write_is_what_the_dvc_stage_runs(tmp_path: Path, cli_env) -> None:
    out = tmp_path / "effective.yaml"
    res = subprocess.run([sys.executable, "-m", "productgan", "params", "write", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == EFFECTIVE.read_text()
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["settings"]
    assert stage["cmd"].startswith("python -m productgan params write") and "params.yaml" in stage["deps"]
