"""lmtie.config: the presets of docs/paper.md §4, the runs of a preset at several seeds, and
the errors of impossible settings."""

import pytest

from lmtie.config import Config, at_seed, make_config, preset_configs, preset_run, seed_of


@pytest.mark.parametrize(("size", "units", "drop", "start", "decay", "clip", "epochs", "init"), [
    ("small", 200, 0.3, 5, 0.9, 5.0, 40, 0.1),
    ("medium", 650, 0.5, 10, 0.9, 5.0, 60, 0.05),
    ("large", 1500, 0.65, 1, 0.97, 6.0, 100, 0.04),
])
def test_ptb_presets_are_the_papers(size, units, drop, start, decay, clip, epochs, init):
    c = make_config("ptb", size, "vd")
    assert (c.embedding_dim, c.hidden_size, c.num_layers) == (units, units, 2)
    assert c.dropout == drop  # Decision D1: drop = 1 - TF keep probability
    assert (c.lr, c.lr_decay_start, c.lr_decay, c.clip_norm) == (1.0, start, decay, clip)
    assert (c.epochs, c.init_range, c.batch_size, c.bptt) == (epochs, init, 20, 35)


def test_variants_switch_tying_and_alpha_independently():
    flags = {v: (make_config("ptb", "small", v).tied, make_config("ptb", "small", v).alpha)
             for v in ("vd", "al", "re", "real")}
    assert flags == {"vd": (False, 0.0), "al": (False, pytest.approx(13.0)),
                     "re": (True, 0.0), "real": (True, pytest.approx(13.0))}
    assert make_config("wikitext-2", "medium", "real").alpha == pytest.approx(1.25 * 20)
    assert make_config("wikitext-2", "small", "vd").dropout == 0.2
    assert make_config("ptb", "small", "al", tau=10.0).alpha == pytest.approx(6.5)  # A1


def test_learning_rate_schedule():
    c = make_config("ptb", "small", "vd")
    assert [c.lr_at(e) for e in (1, 5, 6, 7)] == pytest.approx([1.0, 1.0, 0.9, 0.81])
    large = make_config("ptb", "large", "vd")
    assert large.lr_at(1) == 1.0 and large.lr_at(3) == pytest.approx(0.97**2)


def test_run_ids_and_presets():
    assert make_config("ptb", "small", "real").run_id == "ptb-small-real-seed1"
    smoke = preset_configs("smoke")
    assert smoke[0].run_id == "ptb-small-vd-seed1-smoke"
    assert all(c.max_batches == 100 and c.epochs == 2 for c in smoke)
    assert len(preset_configs("paper")) == 20  # PTB 3 sizes + WikiText-2 2 sizes, x 4
    old = {("preset" if k == "suffix" else k): v for k, v in smoke[0].to_dict().items()}
    assert Config.from_dict(old) == smoke[0]  # config.json before the suffix was so named


@pytest.mark.parametrize(("changes", "message"), [
    ({"tau": 0.0}, "tau must be > 0"),
    ({"alpha": -1.0}, "alpha must be >= 0"),
    ({"tied": True, "embedding_dim": 100}, "embedding_dim == hidden_size"),
    ({"dropout": 1.0}, "drop rate"),
    ({"bptt": 0}, "bptt must be positive"),
    ({"corpus": "wiki"}, "choose one of ptb, wikitext-2"),
    ({"size": "xl"}, "choose one of small, medium, large"),
    ({"variant": "tied"}, "choose one of vd, al, re, real"),
    ({"learning_rate": 1.0}, r"unknown config keys \['learning_rate'\]; valid keys"),
    ({"output_bias": False, "aug_bias": True}, "needs a bias: set output_bias"),
    ({"frozen_target": True, "detach_target": False}, "drop --no-detach-target"),
])
def test_impossible_settings_raise_naming_the_choices(changes, message):
    with pytest.raises(ValueError, match=message):
        Config().replace(**changes)


def test_unknown_preset_and_undefined_cells():
    with pytest.raises(ValueError, match="choose one of smoke, cpu, paper"):
        preset_configs("fast")
    with pytest.raises(ValueError, match="no large model for wikitext-2"):
        make_config("wikitext-2", "large", "vd")
    with pytest.raises(ValueError, match="choose one of vd, al, re, real"):
        make_config("ptb", "small", "tied")


def test_preset_configs_per_seed_and_the_runs_of_a_preset():
    configs = preset_configs("cpu", (1, 2))
    assert [c.run_id for c in configs] == [
        f"ptb-small-{v}-seed{s}" for s in (1, 2) for v in ("vd", "al", "re", "real")]
    assert preset_run("cpu", "ptb-small-real-seed3") == make_config("ptb", "small", "real",
                                                                     seed=3)
    smoke_vd = preset_configs("smoke")[0]
    assert preset_run("smoke", "ptb-small-vd-seed2-smoke") == smoke_vd.replace(seed=2)
    for ablation in ("ptb-small-real-seed1-e10-bias", "ptb-small-real-seed2-e5",
                     "ptb-small-vd-seed1-smoke", "ptb-small-vd-seed0", "ptb-small-vd-seedx"):
        assert preset_run("cpu", ablation) is None
    with pytest.raises(ValueError, match="seeds"):
        preset_configs("cpu", (0,))


def test_the_seed_field_of_a_run_id_is_read_and_replaced_as_config_writes_it():
    bias = make_config("ptb", "small", "re", seed=1, output_bias=True, suffix="bias")
    assert seed_of(bias.run_id) == 1 and seed_of("ptb-small-vd-seed12-e5-bf16") == 12
    assert at_seed(bias.run_id, 2) == bias.replace(seed=2).run_id == "ptb-small-re-seed2-bias"
    assert at_seed("ptb-small-real-seed1", 3) == "ptb-small-real-seed3"
    assert seed_of("ptb-small-vd-seed3-seed1") == 3  # the first field is the seed
    for bad in ("ptb-small-vd", "ptb-small-vd-seedx", "ptb-small-vd-seed2x"):
        with pytest.raises(ValueError, match="no -seed<N>"):
            seed_of(bad)
        with pytest.raises(ValueError, match="no -seed<N>"):
            at_seed(bad, 2)
