"""lmtie.settings: flags → config (run_id suffixes, validation-only ablations), config → the
command that makes it, and back."""

import pytest

from lmtie.config import make_config, preset_configs
from lmtie.settings import (
    SETTINGS,
    describe_change,
    parse_train_flags,
    train_command,
    train_flags,
)


def test_full_schedule_run_has_the_plain_run_id():
    assert parse_train_flags("--variant real").run_id == "ptb-small-real-seed1"
    assert parse_train_flags("--epochs 40").run_id == "ptb-small-vd-seed1"  # the preset's value


def test_departures_from_the_preset_get_a_suffix():
    assert parse_train_flags("--variant real --epochs 1").run_id == "ptb-small-real-seed1-e1"
    config = parse_train_flags("--variant al --tau 10")
    assert config.run_id == "ptb-small-al-seed1-tau10" and config.valid_only
    assert config.alpha == pytest.approx(0.65 * 10)  # Decision A1: alpha = gamma * tau
    assert parse_train_flags("--variant al --tau 0.5").run_id.endswith("-tau0p5")
    assert parse_train_flags("--variant al --alpha 0").alpha == 0.0  # 0 is a value
    assert parse_train_flags("--seed 0").seed == 0
    assert parse_train_flags("--variant al --no-detach-target").detach_target is False
    assert parse_train_flags(["--epochs", "2", "--suffix", "smoke"]).run_id == (
        "ptb-small-vd-seed1-smoke")
    both = parse_train_flags("--variant real --output-bias --aug-bias --epochs 10")
    assert both.run_id == "ptb-small-real-seed1-e10-bias-augbias"
    assert both.aug_bias and both.output_bias and both.valid_only
    frozen = parse_train_flags("--variant real --frozen-target")
    assert frozen.run_id.endswith("-frozen") and frozen.frozen_target and frozen.valid_only
    shortened = parse_train_flags("--variant real --epochs 5 --max-batches 3")
    assert shortened.run_id.endswith("-e5-b3") and not shortened.valid_only  # a schedule


def test_measure_test_turns_a_full_schedule_ablation_into_a_test_measured_reading():
    reading = parse_train_flags("--variant real --no-detach-target --output-bias "
                                "--measure-test")
    assert reading.run_id == "ptb-small-real-seed1-nodetach-bias" and not reading.valid_only
    for flags, fix in (("--measure-test", "for an ablation"),
                       ("--output-bias --epochs 10 --measure-test", "full schedule"),
                       ("--output-bias --max-batches 5 --measure-test",
                        "drop --epochs/--max-batches")):
        with pytest.raises(ValueError, match=fix):
            parse_train_flags(f"--variant real {flags}")


@pytest.mark.parametrize(("flags", "flag"), [
    ("--tau nan", "--tau"), ("--tau inf", "--tau"), ("--tau 1e400", "--tau"),
    ("--tau -1", "--tau"), ("--tau 0", "--tau"), ("--alpha nan", "--alpha"),
    ("--alpha=-inf", "--alpha"), ("--alpha -0.5", "--alpha"), ("--epochs 0", "--epochs"),
    ("--max-batches 0", "--max-batches")])
def test_bad_values_name_their_flag_never_the_suffix(flags, flag):
    with pytest.raises(ValueError, match=f"^{flag} must be ") as caught:
        parse_train_flags(flags)
    assert "suffix" not in str(caught.value)


def test_the_run_id_suffix_is_never_blamed_for_a_value():
    config = parse_train_flags("--variant al --tau 1e20")
    assert config.run_id == "ptb-small-al-seed1-tau1e20" and config.tau == 1e20
    with pytest.raises(ValueError, match=r"tau 1.5e\+308 is too large"):
        parse_train_flags("--corpus wikitext-2 --variant al --tau 1.5e308")
    with pytest.raises(ValueError, match="tau must be a finite number"):
        make_config("ptb", "small", "al", tau=float("nan"))


def test_unknown_flags_and_choices_raise_instead_of_exiting():
    with pytest.raises(ValueError, match="unrecognized arguments: --bptt"):
        parse_train_flags("--bptt 20")
    with pytest.raises(ValueError, match="invalid choice: 'xl'"):
        parse_train_flags("--variant xl")


def test_train_command_round_trips_for_every_preset_and_ablation():
    configs = [c for preset in ("smoke", "cpu", "paper") for c in preset_configs(preset, (1, 2))]
    configs += [
        make_config("ptb", "small", "al", tau=10.0, detach_target=False,
                    suffix="tau10-nodetach", valid_only=True),  # ablation: no test
        make_config("ptb", "small", "real", epochs=5, output_bias=True, suffix="e5-bias",
                    valid_only=True),
        make_config("ptb", "small", "real", epochs=10, output_bias=True, aug_bias=True,
                    suffix="e10-bias-augbias", valid_only=True),
        make_config("ptb", "small", "real", epochs=10, frozen_target=True, suffix="e10-frozen",
                    valid_only=True),
        make_config("ptb", "small", "real", epochs=5, suffix="e5"),  # not an ablation
    ]
    for config in configs:
        assert parse_train_flags(train_flags(config)) == config
        assert parse_train_flags(train_command(config).split()[2:]) == config
    measured = make_config("ptb", "small", "real", detach_target=False, output_bias=True,
                           suffix="nodetach-bias")  # a reading run in full: test measured
    assert train_command(measured) == (
        "lmtie train --corpus ptb --size small --variant real --no-detach-target "
        "--output-bias --suffix nodetach-bias --measure-test")
    assert parse_train_flags(train_flags(measured)) == measured
    with pytest.raises(ValueError, match="bptt"):
        train_flags(make_config(bptt=20))
    with pytest.raises(ValueError, match="output_bias=False"):  # no flag turns b off
        train_flags(make_config(output_bias=False))


def test_the_ablations_words_come_from_the_table():
    base = make_config("ptb", "small", "real")
    change = base.replace(tau=10.0, alpha=6.5, epochs=5, frozen_target=True, suffix="x",
                          valid_only=True)
    assert describe_change(change, base) == "α 6.5, τ 10, ỹ frozen each epoch, 5 epochs"
    assert describe_change(base.replace(bptt=20), base) == "bptt=20"
    assert all(s.words for s in SETTINGS if s.suffix)  # every suffix word has its words
