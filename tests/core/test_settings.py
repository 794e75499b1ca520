"""Settings declared once: TrainConfig's fields and their metadata give the CLI's options, help, choices and
defaults, and the checks of ``__post_init__``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from core.cli import build_parser, main
from core.config import SETTINGS, TrainConfig
from core.errors import ConfigError
from tests.factories import make_tiny_dataset

NOT_FIELDS = {"--continue", "--workspace", "--json"}  # options of the command, not of a run's config
OPTIONS = [setting for setting in SETTINGS.values() if setting.flag]


def _train_parser() -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["train"]


def _actions() -> dict[str, argparse.Action]:
    return {action.option_strings[0]: action for action in _train_parser()._actions if action.option_strings}


def test_every_field_is_declared_with_help():
    assert [field.name for field in dataclasses.fields(TrainConfig)] == list(SETTINGS)
    assert all(setting.help for setting in SETTINGS.values())
    assert [name for name, setting in SETTINGS.items() if setting.flag is None] == ["dataset_id"]


def test_the_cli_has_one_option_per_field_and_keeps_its_own():
    flags = set(_actions()) - {"-h"}
    assert flags == {setting.flag for setting in OPTIONS} | NOT_FIELDS


def test_the_existing_flag_names_are_kept():
    kept = {"--backbone", "--strategy", "--head", "--epochs", "--fine-tune-epochs", "--fine-tune-layers",
            "--batch-size", "--learning-rate", "--fine-tune-learning-rate", "--image-size", "--resize", "--dropout",
            "--hidden-units", "--augment", "--early-stopping-patience", "--weights", "--distribution", "--seed",
            "--continue", "--base-model", "--cut-layer", "--input-scaling", "--workspace", "--json"}
    assert kept <= set(_actions())


@pytest.mark.parametrize("setting", OPTIONS, ids=lambda setting: setting.name)
def test_help_shows_each_option_with_its_default(setting, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: nothing wrapped mid-word
    entries = " ".join(_train_parser().format_help().split()).split(" --")  # one entry per option
    entry = next(entry for entry in entries if entry.startswith(setting.flag[2:] + " "))
    assert entry.endswith(f"{setting.help} (default: {setting.shown_default})"), entry


@pytest.mark.parametrize("setting", [s for s in OPTIONS if s.choices], ids=lambda setting: setting.name)
def test_every_choice_list_of_the_cli_is_the_configs(setting):
    assert tuple(_actions()[setting.flag].choices) == setting.choices


def test_the_cli_defaults_are_the_configs():
    args = _train_parser().parse_args(["some-dataset"])
    config = TrainConfig(dataset_id="some-dataset")
    assert {setting.name: getattr(args, setting.name) for setting in OPTIONS} == \
        {setting.name: getattr(config, setting.name) for setting in OPTIONS}


@pytest.mark.parametrize("setting", [s for s in SETTINGS.values() if s.range], ids=lambda setting: setting.name)
def test_a_value_beyond_a_declared_range_is_refused_in_one_line(setting):
    low, high = setting.range
    for value in (high + 1 if setting.kind is int else high * 2 + 1, low - 1):
        with pytest.raises(ConfigError, match=f"^{setting.name}=") as caught:
            TrainConfig(dataset_id="d", **{setting.name: value})
        assert f"from {low} to {high}" in str(caught.value) and "\n" not in str(caught.value)
    TrainConfig(dataset_id="d", **{setting.name: low})
    TrainConfig(dataset_id="d", **{setting.name: high})


@pytest.mark.parametrize("setting", [s for s in SETTINGS.values() if s.choices], ids=lambda setting: setting.name)
def test_a_value_outside_the_declared_choices_is_refused_naming_them(setting):
    with pytest.raises(ConfigError, match=f"^{setting.name}='nope' is not one of {', '.join(setting.choices)}"):
        TrainConfig(dataset_id="d", **{setting.name: "nope"})


def test_an_out_of_range_option_is_one_error_line_and_leaves_no_run(workspace, tmp_path, capsys):
    from core import runs

    dataset = make_tiny_dataset(workspace, tmp_path, per_class=3)
    code = main(["train", dataset.id, "--epochs", "0", "--workspace", str(workspace.root)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: epochs=0 is not allowed; use a whole number from 1 to 1000.")
    assert runs.list_runs(workspace) == []


def test_input_scaling_auto_on_the_cli_is_the_default_and_needs_no_base_model(workspace, tmp_path, capsys):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=3)
    code = main(["train", dataset.id, "--input-scaling", "raw", "--workspace", str(workspace.root)])
    assert code == 2 and "go with --base-model" in capsys.readouterr().err
    assert _train_parser().parse_args(["d", "--input-scaling", "auto"]).input_scaling == "auto"


def test_a_saved_config_of_an_earlier_version_still_loads():
    saved = {"dataset_id": "d", "backbone": "resnet50", "strategy": "fine-tune", "image_size": 224,
             "resize": "squash", "epochs": 3, "fine_tune_epochs": 2, "batch_size": 16, "learning_rate": 0.001,
             "dropout": 0.2, "hidden_units": 0, "augment": True, "seed": 7, "weights": "imagenet",
             "gone_option": 1}
    config = TrainConfig.from_dict(saved)
    assert (config.backbone, config.resize, config.augment, config.head) == ("resnet50", "squash", True, "auto")
    assert TrainConfig(**config.to_dict()) == config
