import pytest

from stethoscope.config import load_config, parse_overrides, read_config
from stethoscope.errors import ConfigError
from stethoscope.systems import list_systems


def test_overrides_are_yaml_typed():
    items = ["epochs=3", "score_mode=mahala", "detectors=[knn, lof]", "weights="]
    assert parse_overrides(items) == {
        "epochs": 3,
        "score_mode": "mahala",
        "detectors": ["knn", "lof"],
        "weights": None,
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["ldgan..epochs=3"])


def test_dotted_overrides_reach_nested_mappings_and_configs_merge_them(tmp_path):
    items = ["ldgan.epochs=3", "ldgan.tmixup=false", "member_params.dcase_ae.epochs=5"]
    assert parse_overrides(items) == {
        "ldgan": {"epochs": 3, "tmixup": False},
        "member_params": {"dcase_ae": {"epochs": 5}},
    }
    cfg = load_config("tldiffgan", "tldiffgan_cpu", ["ldgan.epochs=3"])
    assert cfg["ldgan"]["epochs"] == 3 and cfg["ldgan"]["ae_channels"] == 32  # the rest kept
    assert cfg["ldgan"]["n_frames"] == 313  # from tldiffgan.yaml, the base of tldiffgan_cpu.yaml
    (tmp_path / "mine.yaml").write_text("ldgan: {batch_size: 2}\n")
    cfg = load_config("tldiffgan", tmp_path / "mine.yaml")
    assert cfg["ldgan"]["batch_size"] == 2 and cfg["ldgan"]["epochs"] == 150
    cfg = load_config("auto", None, ["member_params.mel_stats.min_group_clips=2"])
    assert cfg["member_params"] == {
        "dcase_ae": {"score_mode": "mahala"},
        "mel_stats": {"min_group_clips": 2},
    }


def test_base_inheritance_and_precedence(tmp_path):
    (tmp_path / "parent.yaml").write_text("epochs: 10\nbatch_size: 8\n")
    (tmp_path / "child.yaml").write_text("base: parent\nepochs: 3\n")
    assert read_config(tmp_path / "child.yaml") == {"epochs": 3, "batch_size": 8}
    cfg = load_config("dcase_ae", tmp_path / "child.yaml", ["batch_size=16"])
    assert cfg["epochs"] == 3 and cfg["batch_size"] == 16 and cfg["learning_rate"] == 0.001
    (tmp_path / "loop.yaml").write_text("base: loop\n")
    with pytest.raises(ConfigError, match="loops"):
        read_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="not found"):
        read_config(tmp_path / "missing.yaml")


def test_packaged_config_by_name_and_every_config_fits_its_system():
    assert load_config("tldiffgan", "tldiffgan_no_wave")["use_wave_branch"] is False
    systems = list_systems()
    from importlib import resources

    for path in (resources.files("stethoscope") / "configs").iterdir():
        name = path.name.removesuffix(".yaml")
        system = next(s for s in sorted(systems, key=len, reverse=True) if name.startswith(s))
        unknown = set(read_config(path)) - set(systems[system].param_names())
        assert not unknown, f"{path.name}: {unknown}"
