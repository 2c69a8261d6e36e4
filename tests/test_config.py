import pytest

from cnnvit import config
from cnnvit.cli import main
from cnnvit.engine.setup import load_config
from cnnvit.errors import ConfigError
from cnnvit.rundir import ModelDir


def test_defaults_yaml_flags_set_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 0.01\nmodel: vit-small-input\n")
    cfg = load_config(path, {"lr": "0.5", "model_kwargs": "{width: 32}"})
    assert cfg.epochs == 7
    assert cfg.lr == 0.5
    assert cfg.model == "vit-small-input"
    assert cfg.model_kwargs == {"width": 32}
    assert cfg.batch_size == config.FAMILY_DEFAULTS["vit"]["batch_size"]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        config.load(None, {"epoch": 3})
    msg = err.value.message
    assert "unknown config key 'epoch'" in msg and "did you mean 'epochs'" in msg
    assert "batch_size" in msg and "selection_metric" in msg


@pytest.mark.parametrize("key,value", [("epochs", "ten"), ("epochs", 2.5), ("lr", "fast"),
                                       ("hflip", "maybe"), ("milestones", "a,b")])
def test_wrong_type_is_an_error(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' expects"):
        config.load(None, {key: value})


@pytest.mark.parametrize("key,value", [("optimizer", "lion"), ("scheduler", "poly"),
                                       ("epochs", 0), ("random_erasing", 2)])
def test_invalid_values_are_errors(key, value):
    with pytest.raises(ConfigError, match=key):
        config.load(None, {key: value})


def test_coercion_from_strings():
    cfg = config.load(None, {"hflip": "false", "image_size": "32", "data_root": "none",
                             "milestones": "30,60", "weight_decay": "5e-4"})
    assert cfg.hflip is False and cfg.image_size == 32 and cfg.data_root is None
    assert cfg.milestones == [30.0, 60.0] and cfg.weight_decay == 5e-4
    kw = config.load(None, {"model_kwargs": "width=32,global_pool=avg"}).model_kwargs
    assert kw == {"width": 32, "global_pool": "avg"}


def test_write_and_read_back_round_trip(tmp_path):
    cfg = config.load(None, {"epochs": 3, "model_kwargs": {"depth": 2}})
    config.write(cfg, tmp_path / "config.yaml", {"image_size": 8})
    back, resolved = ModelDir(tmp_path).read_config()
    assert back == cfg and resolved == {"image_size": 8}


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.read_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        config.read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.read_yaml(tmp_path / "list.yaml")


def test_cli_config_errors_exit_2_without_traceback(tmp_path, capsys):
    code = main(["train", "--set", "epoks=3", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cnnvit: error: unknown config key 'epoks'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--set", "novalue", "--out", str(tmp_path / "m")]) == 2


def test_cli_help_has_examples(capsys):
    for cmd in (["train"], ["evaluate"], ["data"], ["data", "info"], ["data", "fetch"],
                ["data", "verify"], ["data", "synth"], ["bench"], ["run"], ["explain"],
                ["compare"]):
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        assert "example" in capsys.readouterr().out


def test_family_recipe_defaults_yield_to_explicit_keys():
    assert load_config(None, {"model": "resnet18-small"}).batch_size == config.Config().batch_size
    vit = load_config(None, {"model": "vit-small-input"})
    assert (vit.batch_size, vit.epochs) == (32, 40)
    assert load_config(None, {"model": "vit-small-input", "epochs": 3}).epochs == 3
    assert load_config(None, {"model": "vit-small-input", "epochs": 3}).batch_size == 32
    # without a family lookup, config.load applies no recipe
    assert config.load(None, {"model": "vit-small-input"}).epochs == config.Config().epochs
