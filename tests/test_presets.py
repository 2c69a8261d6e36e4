"""Presets: entry names become directory names; a model typo fails when the preset loads."""

import pytest

from cnnvit import presets
from cnnvit.errors import CnnvitError


def test_model_directories_are_file_safe_names(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("dataset: digits\nmodels:\n  resnet18-small: {}\n  'tv:resnet18': {}\n"
                    "  '../x': {model: resnet18-small}\n")
    preset = presets.load(str(path))
    names = [p.name for p in preset.models]
    assert names[0] == "resnet18-small"
    assert all("/" not in n and ":" not in n and ".." not in n for n in names[1:])
    assert len(set(names)) == 3
    assert preset.models[1].overrides["model"] == "tv:resnet18"


def test_an_unknown_model_fails_when_the_preset_loads():
    with pytest.raises(CnnvitError, match="unknown model 'resnet81'.*Did you mean.*resnet18"):
        presets.load("quickstart", models=["resnet81"])
