"""The ecosystem's CLI conventions: --device with --gpu as alias, --version, --json, --list-heads / --show-options,
and a package whose manifests and dependencies survive a normal (non-editable) install."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from aqa_pipeline import __version__
from aqa_pipeline.cli.common import device_option, parse_device
from aqa_pipeline.heads.registry import head_names

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("fit", "report", "import_features", "manifest", "compare", "reproduce")


@click.command()
@device_option(default="cpu")
def _echo_device(device: str) -> None:
    click.echo(device)


def test_device_option_takes_the_field_spellings_and_the_gpu_alias():
    runner = CliRunner()
    assert runner.invoke(_echo_device, []).output.strip() == "cpu"
    assert runner.invoke(_echo_device, ["--device", "CPU"]).output.strip() == "cpu"
    both = runner.invoke(_echo_device, ["--device", "cpu", "--gpu", "0"])
    assert both.exit_code == 2 and "not both" in both.output
    bad = runner.invoke(_echo_device, ["--device", "tpu"])
    assert bad.exit_code == 2 and "expected cpu, cuda, cuda:N, mps" in bad.output
    if torch.cuda.is_available():
        assert runner.invoke(_echo_device, ["--gpu", "0"]).output.strip() == "cuda:0"
        assert parse_device("0") == "cuda:0"
    else:
        for args in (["--gpu", "0"], ["--device", "cuda:0"], ["--device", "0"]):
            result = runner.invoke(_echo_device, args)
            assert result.exit_code == 2 and "no CUDA device is available" in result.output, args


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_version_and_help(command):
    main = importlib.import_module(f"aqa_pipeline.cli.{command}").main
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip().endswith(f"(aqa-pipeline) {__version__}")
    assert "Example" in CliRunner().invoke(main, ["--help"]).output


def test_list_heads_and_show_options_with_provenance():
    from aqa_pipeline.cli.fit import main

    listed = CliRunner().invoke(main, ["--list-heads"])
    assert listed.exit_code == 0
    for name in head_names():
        assert f"  {name} " in listed.output
    assert "Grade-decoupling" in listed.output
    shown = CliRunner().invoke(main, ["--show-options", "gdlt"])
    line = next(row for row in shown.output.splitlines() if row.split()[:1] == ["epochs"])
    assert " 40 " in line and "chosen" in line  # default and where it comes from
    options = {
        o["name"]: o
        for o in json.loads(CliRunner().invoke(main, ["--show-options", "gdlt", "--json"]).output)
    }
    assert options["dropout"]["default"] == 0.3 and options["dropout"]["provenance"] == "code"
    assert options["selection"]["defined_in"] == "TorchHead"  # the shared loop's options are listed too
    assert options["optimizer"]["provenance"].startswith("chosen by 5-fold CV")  # the comment block above it


def test_json_output_for_scripts(tmp_path):
    from aqa_pipeline.cli.manifest import main

    shown = json.loads(CliRunner().invoke(main, ["show", "fis-v", "--json"]).output)
    assert shown["splits"] == {"train": 400, "test": 100} and "tes" in shown["columns"]


def test_manifests_are_found_as_package_data_of_an_installed_wheel(tmp_path, monkeypatch):
    from importlib import resources

    from aqa_pipeline import paths

    assert paths.manifest_dir() == REPO / "manifests"  # a source checkout reads its own folder
    installed = tmp_path / "site-packages" / "aqa_pipeline"
    (installed / "data" / "manifests").mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda package: installed)
    assert paths.manifest_dir() == installed / "data" / "manifests"
    monkeypatch.setenv("AQA_MANIFEST_DIR", str(tmp_path))
    assert paths.manifest_dir() == tmp_path


def _third_party_imports() -> set[str]:
    found = set()
    for path in (REPO / "aqa_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "aqa_pipeline"}


def test_dependencies_are_declared_exactly():
    """Every third-party import is a declared dependency (or the extra that enables it) and vice versa."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    distribution = {"cv2": "opencv-python", "sklearn": "scikit-learn", "yaml": "pyyaml"}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["tensorboard"], *extras["mlflow"], *extras["ray"]]
    names = {re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower() for requirement in declared}
    imported = {distribution.get(name, name) for name in _third_party_imports()}
    # tensorboard is imported through torch.utils.tensorboard, so it never shows up as an import of ours
    assert imported | {"tensorboard"} == names


def test_json_output_writes_typed_records_as_objects(capsys):
    from aqa_pipeline.cli.common import echo_json
    from aqa_pipeline.extract.source import FailedItem

    echo_json({"failed": [FailedItem("v1", "v1.mp4: no frames")]})
    assert json.loads(capsys.readouterr().out) == {"failed": [{"id": "v1", "reason": "v1.mp4: no frames"}]}
