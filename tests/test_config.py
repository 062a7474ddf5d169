"""Run configuration: defaults, YAML recipes, --set overrides, validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rawguard.config import ConfigError, RunConfig, load_config, parse_override

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    config = load_config()
    assert config.model.name == "rawnet-lite" and config.train.precision == "auto"
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config
    assert RunConfig.from_dict(config.to_dict()) == config


def test_overrides_are_typed_and_applied_in_order():
    config = load_config(overrides=[
        "optim.lr=3e-4", "train.max_steps=200", "train.max_steps=300", "optim.name=adam",
        "train.class_weights=[0.1, 0.9]", "data.sampling.balanced=true", "model.gru_hidden=32",
        "augment.rawboost_lnl.p=0.25", "train.max_minutes=90",
    ])
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)  # YAML 1.1 reads 3e-4 as a string
    assert config.train.max_steps == 300 and config.optim.name == "adam"
    assert config.train.class_weights == [0.1, 0.9] and config.data.sampling.balanced is True
    assert config.model.overrides == {"gru_hidden": 32}
    assert config.augment.rawboost_lnl.p == 0.25
    assert config.train.max_minutes == 90.0 and isinstance(config.train.max_minutes, float)
    assert config.to_dict()["model"] == {"name": "rawnet-lite", "gru_hidden": 32}  # written flat


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  warmup_steps: 100\nmodel:\n  name: rawnet2\n  gru_layers: 1\n"
                    "augment:\n  enabled: false\n")
    config = load_config(path, ["optim.warmup_steps=5"])
    assert config.optim.lr == 1e-4 and config.optim.warmup_steps == 5
    assert config.model.name == "rawnet2" and config.model.overrides == {"gru_layers": 1}
    assert config.augment.enabled is False


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1e-3", r"unknown config key 'optim.lrr' \(did you mean optim.lr"),
    ("train.max_step=10", r"did you mean train.max_steps"),
    ("trian.max_steps=10", r"unknown config section 'trian'.*train.max_steps"),
    ("optim.lr=fast", r"optim.lr: expected a number, got 'fast'"),
    ("train.max_steps=1.5", r"train.max_steps: expected an integer"),
    ("data.sampling.balanced=maybe", r"data.sampling.balanced: expected true or false"),
    ("data.sampling.copy_share=0.3", r"data.sampling.copy_share: needs data.sampling.balanced: true"),
    ("data.sampling.copy_share=lots", r"data.sampling.copy_share: expected a number"),
    ("data.sampling.copy_share=1.5", r"data.sampling.copy_share: must be null or in \[0, 1\]"),
    ("data.sampling.system_balance=0.5", r"data.sampling.system_balance: needs data.sampling.balanced: true"),
    ("data.sampling.system_balance=2", r"data.sampling.system_balance: must be in \[0, 1\]"),
    ("data.sampling.balance=1", r"unknown config key 'data.sampling.balance' \(did you mean data.sampling.balanced"),
    ("data.copy_share=0.3", r"data.sampling.copy_share: needs data.sampling.balanced"),  # the old flat key
    ("data.speaker_matched=true", r"data.speaker_matched: this option was removed .*What did not help"),
    ("data.speaker_balance=0.5", r"data.speaker_balance: this option was removed"),
    ("data.spoof_speaker_balance=0.5", r"data.spoof_speaker_balance: this option was removed"),
    ("train.mixup=0.5", r"train.mixup: this option was removed .*only 0.0 \(off\) is accepted"),
    ("train.speaker_adversarial=0.1", r"train.speaker_adversarial: this option was removed"),
    ("train.system_auxiliary=0.3", r"train.system_auxiliary: this option was removed"),
    ("optim.sam_rho=0.05", r"optim.sam_rho: this option was removed"),
    ("optim.sam_adaptive=true", r"optim.sam_adaptive: this option was removed"),
    ("augment.dynamics.p=0.3", r"augment.dynamics.p: this option was removed .*only 0.0 \(off\) is accepted"),
    ("augment.tones.p=0.3", r"augment.tones.p: this option was removed"),
    ("model.frontend_mean_norm=true", r"model: .*'frontend_mean_norm' was removed .*What did not help"),
    ("train.compile=sometimes", r"train.compile: expected true or false"),
    ("train.precision=fp8", r"train.precision: must be one of auto, fp32, bf16, fp16"),
    ("optim.lr=-1", r"optim.lr: must be > 0"),
    ("train.class_weights=[1]", r"train.class_weights: must be null or two positive numbers"),
    ("model.gru_hiden=3", r"model.gru_hiden: not a field of 'rawnet-lite'.*gru_hidden"),
    ("model.gru_hidden=big", r"model.gru_hidden: expected an integer"),
    ("model.frontend=fft", r"model.frontend: must be one of conv, sinc"),
    ("model.name=rawnet3", r"model.name: unknown model 'rawnet3'"),
    ("model.dropout=1.5", r"model: .*dropout"),
    ("augment.rawboost_lnl.p=2", r"augment.rawboost_lnl.p"),
    ("augment.nope.p=1", r"unknown config key 'augment.nope.p'"),
    ("train.grad_accum=3", r"train.grad_accum: must divide data.batch_size \(32\)"),
    ("optim", r"expected KEY=VALUE"),
    ("optim=3", r"'optim' names a section"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_bad_yaml_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(broken)
    flat = tmp_path / "flat.yaml"
    flat.write_text("optim: 3\n")
    with pytest.raises(ConfigError, match="flat.yaml: section 'optim' must be a mapping"):
        load_config(flat)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  max_stesp: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown config key 'train.max_stesp' \(did you mean train.max_steps"):
        load_config(typo)
    twice = tmp_path / "twice.yaml"  # PyYAML alone would keep the second value without a word
    twice.write_text("eval:\n  every: 500\n  select_from: 0.5\n  every: 100\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: invalid YAML: key 'every' appears twice in one mapping \(lines 2 and 4\)"):
        load_config(twice)
    sections = tmp_path / "sections.yaml"  # a section written twice would drop the first one's keys
    sections.write_text("train:\n  max_steps: 3\ntrain:\n  seed: 1\n")
    with pytest.raises(ConfigError, match="key 'train' appears twice"):
        load_config(sections)
    assert load_config("shared_corpus").eval.early_every == 1000  # the packaged configs load


def test_parse_override_keeps_strings_and_lists():
    assert parse_override("model.name=rawnet2") == ("model.name", "rawnet2")
    assert parse_override("train.class_weights=[0.1,0.9]") == ("train.class_weights", [0.1, 0.9])
    assert parse_override("train.class_weights=null") == ("train.class_weights", None)


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load(recipe):
    config = load_config(recipe)
    assert yaml.safe_load(recipe.read_text())  # not empty
    assert config.train.max_steps or config.train.max_epochs or config.train.max_minutes


def test_rawnet2_recipe_matches_the_asvspoof_baseline():
    config = load_config(CONFIGS / "asvspoof2019_la_rawnet2.yaml")
    assert config.model.name == "rawnet2" and config.optim.name == "adam"
    assert config.optim.lr == 1e-4 and config.optim.weight_decay == 1e-4 and config.data.batch_size == 32
    assert config.train.class_weights == [0.1, 0.9] and config.data.window == 64600


def test_packaged_recipes_by_name_and_stacked_files(tmp_path):
    stacked = load_config(["shared_corpus", "augment/none"])
    assert stacked.model.name == "rawnet-lite" and stacked.augment.enabled is False
    assert load_config("shared_corpus") == load_config(Path(__file__).resolve().parents[1] / "configs" / "shared_corpus.yaml")
    later = tmp_path / "later.yaml"
    later.write_text("optim:\n  lr: 0.5\n")
    assert load_config(["shared_corpus", later]).optim.lr == 0.5
    with pytest.raises(ConfigError, match="packaged recipes: .*shared_corpus"):
        load_config("no_such_recipe")


def test_old_flat_sampling_keys_and_removed_options_at_off_load_from_an_old_config(tmp_path):
    # A config.yaml as runs wrote it before data.sampling existed and the pruned options were removed.
    old = load_config().to_dict()
    old["data"] = {"window": 16000, "batch_size": 32, "balanced": True, "copy_share": 0.5, "speaker_matched": False,
                   "system_balance": 0.5, "speaker_balance": 0.0, "spoof_speaker_balance": 0.0, "prefetch": 2}
    old["train"].update(mixup=0.0, speaker_adversarial=0.0, system_auxiliary=0.0)
    old["optim"].update(sam_rho=0.0, sam_adaptive=False, sam_from=0.0)
    old["model"]["frontend_mean_norm"] = False
    # Removed augmentations, whole sections as a run saved them, off.
    old["augment"]["tones"] = {"p": 0.0, "hum_share": 0.5, "n_partials": 8}
    old["augment"]["dynamics"] = {"p": 0.0, "min_ratio": 3.0, "max_ratio": 20.0, "release_ms": 50.0}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    config = load_config(path)
    assert (config.data.sampling.balanced, config.data.sampling.copy_share, config.data.sampling.system_balance) \
        == (True, 0.5, 0.5)
    assert config.model.overrides == {} and not hasattr(config.train, "mixup") and not hasattr(config.optim, "sam_rho")
    assert "sampling" in config.to_dict()["data"] and "balanced" not in config.to_dict()["data"]
    old["train"]["mixup"] = 0.5  # the run used it: it cannot be reproduced today
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=rf"{path}: train.mixup: this option was removed"):
        load_config(path)
    old["train"]["mixup"] = 0.0
    old["augment"]["dynamics"]["p"] = 0.3
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=rf"{path}: augment.dynamics.p: this option was removed"):
        load_config(path)
