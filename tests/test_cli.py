"""lmtie.cli: the commands, their help (names, defaults, speed), the same --results-dir for
every command, and clean errors: exit status 2 with one line naming the flag and the fix."""

import re
import subprocess
import sys

import pytest

from lmtie import pipeline, settings
from lmtie.cli import main


def run(capsys, *argv):
    """``main(argv)``: exit code and stderr."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def help_of(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys; from lmtie import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    for command in ("train", "evaluate", "diagnose", "reproduce", "data", "subspace"):
        assert f"\n    {command}" in out
    assert out.strip().endswith("False False")


def test_train_flags_are_the_settings_and_every_value_says_its_default(capsys):
    text = help_of(capsys, "train")
    entries = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]  # [0]: the title
    assert len(entries) > 15
    for entry in entries:  # an option that takes a value says what it is when not given
        if re.match(r"--[a-z-]+ [A-Z{]", entry):
            assert "default" in entry, entry
    for setting in settings.SETTINGS:
        assert f"{setting.flag} " in text or f"{setting.flag}\n" in text, setting.flag


def test_old_spellings_say_the_new(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "smoke"])
    assert "--suffix names the run_id suffix" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--output-dir", "x"])
    assert "renamed: --results-dir" in capsys.readouterr().err


def test_results_dir_is_the_results_root_for_every_command(tmp_path, capsys, monkeypatch):
    code, err = run(capsys, "train", "--results-dir", tmp_path / "runs", "--epochs", "1")
    assert code == 2 and "results root" in err
    assert not (tmp_path / "runs").exists()
    calls = []
    monkeypatch.setattr(pipeline, "reproduce", lambda preset, **kw: calls.append((preset, kw)))
    assert main(["reproduce", "--preset", "cpu", "--seeds", "1,2,3", "--report-only",
                 "--results-dir", str(tmp_path)]) == 0
    assert calls[0][0] == "cpu" and calls[0][1]["seeds"] == (1, 2, 3)
    assert calls[0][1]["results_dir"] == str(tmp_path)
    for command in ("train", "reproduce", "subspace"):
        assert "results root" in help_of(capsys, command)


def test_measure_test_refusals_exit_2_before_anything_is_written(tmp_path, capsys):
    for flags, fix in ((["--measure-test"], "for an ablation"),
                       (["--output-bias", "--epochs", "10", "--measure-test"], "full schedule")):
        code, err = run(capsys, "train", "--variant", "real", *flags, "--data-dir", tmp_path,
                        "--results-dir", tmp_path, "--quiet")
        assert code == 2 and fix in err
    assert not (tmp_path / "runs").exists()  # refused before anything is written


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys):
    code, err = run(capsys, "train", "--epochs", "1", "--data-dir", tmp_path, "--device",
                    "cpu", "--results-dir", tmp_path, "--quiet")
    assert code == 2 and "lmtie data download ptb" in err
    assert main(["data", "download", "--dest", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--variant", "xl"])
    with pytest.raises(SystemExit):
        main(["reproduce", "--seeds", "0"])


BAD_FLAGS = [
    (["train", "--tau", "nan"], "--tau"), (["train", "--tau", "inf"], "--tau"),
    (["train", "--tau", "1e400"], "--tau"), (["train", "--tau", "-1"], "--tau"),
    (["train", "--tau", "0"], "--tau"), (["train", "--alpha", "nan"], "--alpha"),
    (["train", "--alpha=-inf"], "--alpha"), (["train", "--alpha", "-0.5"], "--alpha"),
    (["train", "--threads", "0"], "--threads"), (["train", "--threads", "-2"], "--threads"),
    (["train", "--epochs", "0"], "--epochs"), (["train", "--max-batches", "0"], "--max-batches"),
    (["evaluate", "somewhere", "--threads", "-1"], "--threads"),
    (["reproduce", "--jobs", "0"], "--jobs"), (["subspace", "--seeds", "0"], "--seeds"),
    (["subspace", "--jobs", "0"], "--jobs"), (["subspace", "--threads", "0"], "--threads"),
    (["subspace", "--epochs", "0"], "--epochs"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD_FLAGS)
def test_bad_values_name_their_flag(capsys, tmp_path, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)  # nothing may be written, not even under ./results
    code, err = run(capsys, *argv, "--data-dir", tmp_path)
    assert code == 2 and err.startswith(f"lmtie {argv[0]}: error: {flag} must be ")
    assert "suffix" not in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
