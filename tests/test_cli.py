"""The CLI's smaller commands, help texts, policies and the public API."""

from __future__ import annotations

import importlib
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import radguard
from radguard.cli import main
from radguard.errors import PolicyError
from radguard.settings import check_policy, load_policy

from conftest import pydicom_file


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize("name,command", _commands(main))
def test_every_command_has_help(name: str, command: click.Command) -> None:
    assert command.help and len(command.help) > 10, name
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts}"


@pytest.mark.parametrize(
    "module", ["radguard", "radguard.deid", "radguard.profile", "radguard.pipeline"]
)
def test_public_api_names_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name} is in __all__ but missing"


def test_explain_masks_and_shows_rules(key_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["explain", str(pydicom_file("CT_small.dcm")), "--key-file", str(key_file), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "InstitutionName" in result.output and "E.1-1" in result.output
    assert "CompressedSamples" not in result.output and "JFK" not in result.output


def test_profile_show_follows_options() -> None:
    basic = CliRunner().invoke(main, ["profile", "show", "--json"])
    full = CliRunner().invoke(
        main, ["profile", "show", "--json", "--option", "retain-longitudinal-full-dates"]
    )
    assert basic.exit_code == full.exit_code == 0
    import json

    rows_basic = {r["tag"]: r for r in json.loads(basic.output)["rows"]}
    rows_full = {r["tag"]: r for r in json.loads(full.output)["rows"]}
    assert rows_basic["(0008,0020)"]["action"] == "Z"
    assert rows_full["(0008,0020)"]["action"] == "K"
    assert len(rows_basic) == 656


def test_policy_check_reports_every_problem_with_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'extends = "research"\n'
        "[profile]\n"
        'add = ["retain-everything"]\n'
        "[dates]\n"
        "shift_min_days = 10\n"
        "shift_max_days = 5\n"
        "colour = 3\n"
        "[[overrides]]\n"
        'attribute = "NoSuchKeyword"\n'
        'action = "keep"\n'
    )
    problems = check_policy(bad)
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "line 3" in text and "retain-everything" in text
    assert "line 7" in text and "colour" in text
    assert "line 5" in text and "shift_min_days" in text
    assert "line 9" in text and "NoSuchKeyword" in text
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    good = tmp_path / "good.yaml"
    good.write_text("extends: basic\nprofile:\n  add: [retain-uids, '113105']\n")
    assert check_policy(good) == []
    assert load_policy(good).option_names == ["clean-descriptors", "retain-uids"]


def test_policy_errors() -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy("no-such-policy")
    result = CliRunner().invoke(main, ["deid", ".", "/tmp/x", "--option", "bogus"])
    assert result.exit_code == 2
    assert "unknown profile option" in result.output


def test_key_new_is_private_and_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "k" / "p.key"
    first = CliRunner().invoke(main, ["key", "new", "--out", str(target)])
    assert first.exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    secret = target.read_text().split()[1]
    assert secret not in first.output
    again = CliRunner().invoke(main, ["key", "new", "--out", str(target)])
    assert again.exit_code == 2 and "never overwrites" in again.output
    target.chmod(0o644)
    shown = CliRunner().invoke(main, ["key", "show", "--key-file", str(target)])
    assert shown.exit_code == 2 and "chmod 600" in shown.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert radguard.__version__ in result.output


def test_explain_names_the_file_and_problem(tmp_path: Path, key_file: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    result = CliRunner().invoke(main, ["explain", str(junk), "--key-file", str(key_file)])
    assert result.exit_code == 2
    assert "junk.txt" in result.output and "not a DICOM file" in result.output


def test_cli_reference_is_up_to_date() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
