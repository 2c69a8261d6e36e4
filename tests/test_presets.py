"""Presets: entry names become directory names."""

from cnnvit import presets


def test_model_directories_are_file_safe_names():
    preset = presets.load("quickstart", models=["resnet18-small", "tv:resnet18", "../evil"])
    names = [p.name for p in preset.models]
    assert names[0] == "resnet18-small"
    assert all("/" not in n and ":" not in n and ".." not in n for n in names)
    assert preset.models[1].overrides["model"] == "tv:resnet18"
