"""The command line: config from flags, run_id suffixes, clean errors."""

import pytest

from lmtie.cli import _parser, _train_config, main


def config_of(*flags):
    return _train_config(_parser().parse_args(["train", *flags]))


def test_full_schedule_run_has_the_plain_run_id():
    assert config_of("--variant", "real").run_id == "ptb-small-real-seed1"
    assert config_of("--epochs", "40").run_id == "ptb-small-vd-seed1"  # the preset's value


def test_departures_from_the_preset_get_a_suffix():
    assert config_of("--variant", "real", "--epochs", "1").run_id == "ptb-small-real-seed1-e1"
    config = config_of("--variant", "al", "--tau", "10")
    assert config.run_id == "ptb-small-al-seed1-tau10"
    assert config.alpha == pytest.approx(0.65 * 10)  # Decision A1: alpha = gamma * tau
    assert config_of("--variant", "al", "--tau", "0.5").run_id.endswith("-tau0p5")
    assert config_of("--variant", "al", "--no-detach-target").detach_target is False
    assert config_of("--epochs", "2", "--suffix", "smoke").run_id == "ptb-small-vd-seed1-smoke"
    both = config_of("--variant", "real", "--output-bias", "--aug-bias", "--epochs", "10")
    assert both.run_id == "ptb-small-real-seed1-e10-bias-augbias"
    assert both.aug_bias and both.output_bias and both.valid_only
    frozen = config_of("--variant", "real", "--frozen-target")
    assert frozen.run_id.endswith("-frozen") and frozen.frozen_target and frozen.valid_only


def test_measure_test_turns_a_full_schedule_ablation_into_a_test_measured_reading(tmp_path,
                                                                                     capsys):
    reading = config_of("--variant", "real", "--no-detach-target", "--output-bias",
                        "--measure-test")
    assert reading.run_id == "ptb-small-real-seed1-nodetach-bias" and not reading.valid_only
    assert config_of("--variant", "real", "--output-bias").valid_only  # without: valid only
    for flags, fix in ((["--measure-test"], "for an ablation"),
                       (["--output-bias", "--epochs", "10", "--measure-test"], "full schedule"),
                       (["--output-bias", "--max-batches", "5", "--measure-test"],
                        "drop --epochs/--max-batches")):
        assert main(["train", "--variant", "real", *flags, "--data-dir", str(tmp_path),
                     "--results-dir", str(tmp_path), "--quiet"]) == 2
        assert fix in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys):
    code = main(["train", "--epochs", "1", "--data-dir", str(tmp_path), "--device", "cpu",
                 "--results-dir", str(tmp_path), "--quiet"])
    assert code == 2
    assert "lmtie data download ptb" in capsys.readouterr().err
    assert main(["data", "download", "--dest", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--variant", "xl"])


def test_flag_check_takes_the_seeds_of_reproduce():
    """reproduce --seeds parses to a tuple: the check of counts takes each seed (it compared
    the tuple with 1 and crashed `make report`)."""
    from lmtie.cli import _check_flags

    _check_flags(_parser().parse_args(["reproduce", "--seeds", "1,2,3"]))
    args = _parser().parse_args(["reproduce"])
    args.seeds = (1, 0)
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 1,0"):
        _check_flags(args)
