"""A params.yaml with a wrong type or an unknown key, in every section and every nested section: a clear error
naming the file and the dotted key, never a silent default or a traceback from deep inside a step."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_params_file import ALL_SECTIONS as SECTIONS
from test_params_file import _cls

from productgan.params import ParamsError, load_section

REPO = Path(__file__).resolve().parents[1]


def _wrong_value(hint: Any) -> Any:
    """A value of the wrong type for a field of type ``hint``."""
    if dataclasses.is_dataclass(hint):
        return 5
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    hint = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    if hint is bool:
        return "yes please"
    if hint in (int, float):
        return True if hint is int else "fast"  # a bool is not a number; text is not a float
    if hint is str:
        return 12
    if typing.get_origin(hint) is list:
        return "fd_domain"  # a bare string where a list is expected
    if typing.get_origin(hint) is dict:
        return ["gpu"]  # a list where a mapping is expected
    raise AssertionError(f"no wrong value for {hint}")


def _fields(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every field (nested dataclasses too, and the nested dataclass itself) as (path, type)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, hint = (*prefix, f.name), hints[f.name]
        out.append((path, hint))
        if dataclasses.is_dataclass(hint):
            out.extend(_fields(hint, path))
    return out


def _cases() -> list[tuple[str, tuple[str, ...], Any]]:
    return [(section, path, hint)
            for section, target in sorted(SECTIONS.items()) for path, hint in _fields(_cls(target))]


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    return doc


def _case_id(value: Any) -> str | None:
    return ".".join(value) if isinstance(value, tuple) else None


@pytest.mark.parametrize(("section", "path", "hint"), _cases(), ids=_case_id)
def test_wrong_type_names_the_key(tmp_path: Path, section: str, path: tuple[str, ...], hint: Any) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({section: _nested(path, _wrong_value(hint))}))
    with pytest.raises(ParamsError) as err:
        load_section(section, _cls(SECTIONS[section]), params)
    message = str(err.value)
    assert f"{params}:{section}.{'.'.join(path)}: expected" in message and "fix it in params.yaml" in message


def _sections_and_nested() -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for section, target in sorted(SECTIONS.items()):
        out.append((section, ()))
        out.extend((section, path) for path, hint in _fields(_cls(target)) if dataclasses.is_dataclass(hint))
    return out


@pytest.mark.parametrize(("section", "path"), _sections_and_nested(), ids=str)
def test_unknown_key_names_the_key(tmp_path: Path, section: str, path: tuple[str, ...]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({section: _nested((*path, "lerning_rate"), 0.1)}))
    with pytest.raises(ParamsError, match="unknown key") as err:
        load_section(section, _cls(SECTIONS[section]), params)
    assert f"{params}:{'.'.join((section, *path, 'lerning_rate'))}" in str(err.value)


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("register: product-gan\n")
    with pytest.raises(ParamsError, match=r"register: expected a mapping"):
        load_section("register", _cls(SECTIONS["register"]), params)


@pytest.mark.parametrize("step", ["ingest", "register"])
def test_cli_shows_the_error_not_a_traceback(tmp_path: Path, step: str) -> None:
    """Steps that did not catch ParamsError themselves printed a traceback; the CLI now shows the message."""
    from productgan.cli import cli

    params = tmp_path / "params.yaml"
    bad = {"ingest": {"ingest": {"s3_max_attempts": "eight"}}, "register": {"register": {"margin": "2%"}}}[step]
    params.write_text(yaml.safe_dump(bad))
    (tmp_path / "g").mkdir()
    (tmp_path / "m.json").write_text("{}")
    args = {"ingest": ["ingest", "--out", str(tmp_path / "data")],
            "register": ["register", "--generator", str(tmp_path / "g"), "--metrics", str(tmp_path / "m.json")]}[step]
    res = CliRunner().invoke(cli, ["--params", str(params), *args])
    assert res.exit_code == 1 and res.exception is not None and isinstance(res.exception, SystemExit), res.output
    key = {"ingest": "ingest.s3_max_attempts", "register": "register.margin"}[step]
    assert f"Error: {params}:{key}: expected" in res.output, res.output
