"""lmtie.identity: which files and checkpoints belong to which run, replayed on tiny runs
through the command line (the fault catalogue of issue 19): resuming, another run's or an
older code's checkpoints, legacy folders, one writer per run, corrupt, unwritable or full
folders, orphan temporary files.

Every case asserts the exit code, the message (the file or flag at fault and a fix that
exists), and that no result file or checkpoint that existed before changed (byte for byte).
The corpus is a tiny synthetic PTB (tests/conftest.py), so a two-epoch run of the small model
takes well under a second; checkpoints default to a folder under tmp, never ~/.cache.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_ptb

from lmtie import analysis, atomic, data, identity, lock, report, runs, train
from lmtie.cli import main
from lmtie.config import Config, make_config

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs"
VD = "ptb-small-vd-seed1-e2"  # lmtie train --variant vd --epochs 2
AL = "ptb-small-al-seed1-e2"
TIME_KEYS = {"tokens_per_s", "elapsed_s", "wall_s"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny corpus, accepted by the corpus check for the whole module."""
    root = tmp_path_factory.mktemp("corpus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(data.EXPECTED, "ptb", write_tiny_ptb(root))
        yield root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The default checkpoint root of every test: a folder of its own."""
    monkeypatch.setattr(runs, "DEFAULT_CHECKPOINT_ROOT", tmp_path / "cache")
    return tmp_path / "cache"


def lmtie(capsys, *argv, corpus=None):
    """``main(argv)`` on the tiny corpus (CPU, quiet): exit code, stdout, stderr."""
    argv = [str(a) for a in argv]
    if argv[0] in ("train", "evaluate"):
        argv += ["--device", "cpu", "--quiet", *(["--data-dir", str(corpus)] if corpus else [])]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def template(corpus, tmp_path_factory):
    """Two finished runs (VD-LSTM and +AL, 2 epochs), each with its checkpoint folder."""
    root = tmp_path_factory.mktemp("template")
    for variant in ("vd", "al"):
        code = main(["train", "--variant", variant, "--epochs", "2", "--device", "cpu",
                     "--quiet", "--data-dir", str(corpus), "--results-dir", str(root),
                     "--checkpoint-dir", str(root / "ckpt" / variant)])
        assert code == 0
    return root


@pytest.fixture
def lab(template, tmp_path):
    """A private copy of the template runs."""
    return Path(shutil.copytree(template, tmp_path / "lab"))


def snapshot(*folders):
    """Every file under ``folders`` (lock files aside) -> its bytes."""
    return {str(p): p.read_bytes() for folder in folders if Path(folder).exists()
            for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name not in lock.LOCK_FILES}


def refused(capsys, argv, *phrases, corpus, unchanged):
    """Run ``argv``; assert exit 2, one error message holding ``phrases`` and no traceback,
    and every file under ``unchanged`` byte-identical. Returns the message."""
    before = snapshot(*unchanged)
    code, out, err = lmtie(capsys, *argv, corpus=corpus)
    assert code == 2, (out, err)
    assert err.startswith(f"lmtie {argv[0]}: error: ") and "Traceback" not in out + err
    for phrase in phrases:
        assert phrase in err
    assert "weights_only" not in err
    assert snapshot(*unchanged) == before
    return err


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def train_vd(lab, *extra):
    return ["train", "--variant", "vd", "--epochs", "2", "--results-dir", lab,
            "--checkpoint-dir", lab / "ckpt" / "vd", *extra]


# --- data lost or corrupted --------------------------------------------------------------


@pytest.mark.parametrize("checkpoints", ["empty folder", "default folder"])
def test_resume_without_checkpoint_keeps_a_committed_run(corpus, tmp_path, capsys, checkpoints):
    """A fresh clone: the committed 40-epoch run has no checkpoint here."""
    results = tmp_path / "results"
    shutil.copytree(COMMITTED / "ptb-small-vd-seed1", results / "runs" / "ptb-small-vd-seed1")
    where = ["--checkpoint-dir", tmp_path / "EMPTY"] if checkpoints == "empty folder" else []
    err = refused(capsys, ["train", "--variant", "vd", "--resume", "--results-dir", results,
                           *where], "--resume: no checkpoint", "records 40 epoch(s)",
                  "nothing was changed", "--force", corpus=corpus, unchanged=[tmp_path])
    assert str(results / "runs" / "ptb-small-vd-seed1") in err


def test_evaluate_with_another_runs_checkpoints(lab, corpus, capsys):
    err = refused(capsys, ["evaluate", lab / "runs" / VD, "--checkpoint-dir", lab / "ckpt" / "al"],
                  "belongs to another run", "variant 'al' instead of 'vd'", VD,
                  corpus=corpus, unchanged=[lab])
    fingerprints = re.findall(r"fingerprint ([0-9a-f]{12})", err)
    assert len(set(fingerprints)) == 2  # names both


def test_one_writer_per_run_and_a_killed_holder_frees_it(lab, corpus, capsys):
    run_dir = lab / "runs" / VD
    with holding(run_dir) as holder:
        for extra in (["--resume"], ["--force"]):  # --force never removes a locked run
            refused(capsys, train_vd(lab, *extra), f"in use by pid {holder.pid}",
                    "nothing was changed", corpus=corpus, unchanged=[lab])
        refused(capsys, ["evaluate", run_dir, "--checkpoint-dir", lab / "ckpt" / "vd"],
                f"in use by pid {holder.pid}", corpus=corpus, unchanged=[lab])
        os.kill(holder.pid, signal.SIGKILL)  # the OS releases a killed holder's lock
        holder.wait()
        code, _, err = lmtie(capsys, *train_vd(lab, "--resume"), corpus=corpus)
        assert code == 0, err
    with holding(lab / "ckpt" / "vd") as holder:  # the checkpoint folder is locked too
        refused(capsys, ["train", "--variant", "vd", "--epochs", "2", "--resume",
                         "--results-dir", lab / "elsewhere", "--checkpoint-dir",
                         lab / "ckpt" / "vd"], f"pid {holder.pid}", "checkpoint folder",
                corpus=corpus, unchanged=[lab])


@contextmanager
def holding(folder):
    """A separate process holding ``folder``'s lock until killed."""
    code = ("import sys, time\nfrom lmtie.lock import hold\nwith hold(sys.argv[1], 'run dir'):"
            "\n    print('held', flush=True)\n    time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_fit_holds_the_lock_while_it_trains_and_evaluates(corpus, tmp_path, monkeypatch,
                                                          capsys):
    tried = []
    real_epoch, real_evaluate = train.train_epoch, train.evaluate

    def take_locks():
        for folder in (tmp_path / "runs" / VD, tmp_path / "ckpt"):
            with pytest.raises(lock.RunLockedError, match=f"pid {os.getpid()}"), \
                    lock.hold(folder, "run dir"):
                pass
            tried.append(folder)

    monkeypatch.setattr(train, "train_epoch", lambda *a, **k: (take_locks(),
                                                                real_epoch(*a, **k))[1])
    for module in (train, analysis):  # validation, and the numbers of each epoch
        monkeypatch.setattr(module, "evaluate", lambda *a, **k: (take_locks(),
                                                                 real_evaluate(*a, **k))[1])
    code, _, err = lmtie(capsys, "train", "--variant", "vd", "--epochs", "2", "--results-dir",
                         tmp_path, "--checkpoint-dir", tmp_path / "ckpt",
                         corpus=corpus)
    assert code == 0, err
    assert tried.count(tmp_path / "ckpt") > 2 + 4  # each epoch, then the test evaluation
    assert not (tmp_path / "runs" / VD / lock.HOLDER_NAME).exists()  # released at the end


def test_two_configurations_sharing_a_run_id(lab, corpus, capsys):
    """--epochs 3 --preset e2 names the run of --epochs 2: another fingerprint."""
    other = ["train", "--variant", "vd", "--epochs", "3", "--suffix", "e2", "--results-dir",
             lab, "--checkpoint-dir", lab / "ckpt" / "vd"]
    for extra in ([], ["--resume"]):
        refused(capsys, [*other, *extra], "holds 2 epoch(s) of a run with fingerprint",
                "epochs 2 instead of 3", "--suffix", "--force", corpus=corpus, unchanged=[lab])
    code, _, err = lmtie(capsys, *other, "--force", corpus=corpus)
    assert code == 0, err
    config = atomic.read_json(lab / "runs" / VD / "config.json")
    assert config["epochs"] == atomic.read_json(lab / "runs" / VD / "final.json")["epochs_run"] == 3


def test_a_new_results_folder_meets_the_checkpoints_of_the_same_run(corpus, tmp_path, capsys,
                                                                     private_cache):
    first = ["train", "--variant", "vd", "--epochs", "2", "--results-dir"]
    assert lmtie(capsys, *first, tmp_path / "R1", corpus=corpus)[0] == 0
    (folder,) = private_cache.iterdir()
    sha = data.split_sha256("ptb", corpus)  # what `lmtie reproduce` keys the folder by
    config = make_config("ptb", "small", "vd", epochs=2, suffix="e2")
    assert folder == identity.checkpoint_dir_for(config, identity.fingerprint(config, sha))
    refused(capsys, [*first, tmp_path / "R2"], "holds epoch 2 of this run", "--resume",
            "--force", corpus=corpus, unchanged=[tmp_path / "R1", private_cache])
    code, out, err = lmtie(capsys, *first, tmp_path / "R2", "--resume", corpus=corpus)
    assert code == 0 and f"continuing from {folder / 'last.pt'} (epoch 2)" in out, err
    env = atomic.read_json(tmp_path / "R2" / "runs" / VD / "env.json")
    assert env["from_checkpoint"] == {"checkpoint": str(folder / "last.pt"), "epoch": 2}
    assert without_times(atomic.read_jsonl(tmp_path / "R2" / "runs" / VD / "metrics.jsonl")) == \
        without_times(atomic.read_jsonl(tmp_path / "R1" / "runs" / VD / "metrics.jsonl"))
    # another configuration under the same run_id gets a folder of its own
    other = config.replace(tau=10.0)
    assert identity.checkpoint_dir_for(other, identity.fingerprint(other, sha)) != folder


def killed_in_epoch(epoch, real_epoch):
    """``train.train_epoch`` that runs ``real_epoch`` until the ``epoch``-th call, which is
    killed (KeyboardInterrupt) before it trains."""
    calls = []

    def train_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    return train_epoch


def test_checkpoint_of_an_earlier_epoch_than_the_run_dir(corpus, tmp_path, monkeypatch,
                                                         capsys):
    """A same-fingerprint copy that stopped after epoch 2 must not rewind (resume) or
    misreport (evaluate) the run that went on to epoch 3 and its best there."""
    argv, run_id = ["train", "--variant", "re", "--epochs", "3"], "ptb-small-re-seed1-e3"
    run = ["--results-dir", tmp_path / "R", "--checkpoint-dir", tmp_path / "C"]
    assert lmtie(capsys, *argv, *run, corpus=corpus)[0] == 0
    rows = atomic.read_jsonl(tmp_path / "R" / "runs" / run_id / "metrics.jsonl")
    assert min(rows, key=lambda r: r["valid_ppl"])["epoch"] == 3  # the run's best epoch
    real_epoch = train.train_epoch
    monkeypatch.setattr(train, "train_epoch", killed_in_epoch(3, real_epoch))
    with pytest.raises(KeyboardInterrupt):
        lmtie(capsys, *argv, "--results-dir", tmp_path / "copy", "--checkpoint-dir",
              tmp_path / "early", corpus=corpus)
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    capsys.readouterr()
    keep = [tmp_path / "R", tmp_path / "C", tmp_path / "early"]
    refused(capsys, [*argv, "--resume", *run[:2], "--checkpoint-dir", tmp_path / "early"],
            "records 3 epochs but", "only 2", corpus=corpus, unchanged=keep)
    refused(capsys, ["evaluate", tmp_path / "R" / "runs" / run_id, "--checkpoint-dir",
                     tmp_path / "early"], "best checkpoint is from epoch 1",
            "at epoch 3 of 3", corpus=corpus, unchanged=keep)


def test_code_or_corpus_of_another_fingerprint(lab, corpus, capsys, monkeypatch):
    monkeypatch.setattr(identity, "MATH_VERSION", identity.MATH_VERSION + 1)
    for argv in (train_vd(lab, "--resume"),
                 ["evaluate", lab / "runs" / VD, "--checkpoint-dir", lab / "ckpt" / "vd"]):
        refused(capsys, argv, "not of this command's run",
                "same settings, so the corpus files or the training math version differ",
                corpus=corpus, unchanged=[lab])


# --- runs from before fingerprints ---------------------------------------------------------


def test_legacy_checkpoint_resumes_bit_identically(corpus, tmp_path, monkeypatch, capsys,
                                                   private_cache):
    """A run the previous code left after epoch 2 (checkpoints in <root>/<run_id>/, no
    fingerprint anywhere, config.json without the newer fields) resumes under this code,
    adopts its folder and ends as the uninterrupted run."""
    run_id, argv = "ptb-small-real-seed1-e3", ["train", "--variant", "real", "--epochs", "3"]
    whole = tmp_path / "whole"
    assert lmtie(capsys, *argv, "--results-dir", whole, "--checkpoint-dir", tmp_path / "w",
                 corpus=corpus)[0] == 0
    real_epoch = train.train_epoch
    monkeypatch.setattr(train, "train_epoch", killed_in_epoch(3, real_epoch))
    with pytest.raises(KeyboardInterrupt):
        lmtie(capsys, *argv, "--results-dir", tmp_path / "old", corpus=corpus)
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    (keyed,) = private_cache.iterdir()
    legacy = private_cache / run_id  # the old layout, written as the old code wrote it
    legacy.mkdir()
    for path in keyed.glob("*.pt"):
        payload = torch.load(path, weights_only=True)
        del payload["fingerprint"]
        torch.save(payload, legacy / path.name)
    shutil.rmtree(keyed)
    run_dir = tmp_path / "old" / "runs" / run_id
    stored = atomic.read_json(run_dir / "config.json")
    for key in ("fingerprint", "aug_bias", "frozen_target"):
        del stored[key]
    atomic.write_json(run_dir / "config.json", stored)
    env = atomic.read_json(run_dir / "env.json")
    del env["from_checkpoint"]
    atomic.write_json(run_dir / "env.json", env)

    code, _, err = lmtie(capsys, *argv, "--resume", "--results-dir", tmp_path / "old",
                         corpus=corpus)
    assert code == 0, err
    assert without_times(atomic.read_jsonl(run_dir / "metrics.jsonl")) == without_times(
        atomic.read_jsonl(whole / "runs" / run_id / "metrics.jsonl"))
    resumed, uninterrupted = (without_times([atomic.read_json(d / "runs" / run_id / "final.json")])
                              for d in (tmp_path / "old", whole))
    assert resumed == uninterrupted
    assert not legacy.exists() and keyed.is_dir()
    fingerprint = atomic.read_json(run_dir / "config.json")["fingerprint"]
    assert runs.load_checkpoint(keyed / "last.pt")["fingerprint"] == fingerprint
    assert atomic.read_json(run_dir / "env.json")["resumes"][-1]["from_checkpoint"] == {
        "checkpoint": str(keyed / "last.pt"), "epoch": 2, "moved_from": str(legacy)}


def test_legacy_folder_of_another_config_is_left_alone(lab, tmp_path, corpus):
    config = make_config("ptb", "small", "vd", epochs=2, suffix="e2")
    sha = data.Corpus("ptb", corpus).sha256
    fp = identity.fingerprint(config, sha)
    keyed = identity.checkpoint_dir_for(config, fp, tmp_path / "root")
    legacy = keyed.parent / config.run_id
    payload = runs.load_checkpoint(lab / "ckpt" / "vd" / "last.pt")
    del payload["fingerprint"]
    payload["config"] = config.replace(tau=10.0).to_dict()
    legacy.mkdir(parents=True)
    torch.save(payload, legacy / "last.pt")
    keyed.mkdir()
    before = snapshot(legacy)
    assert identity.adopt_unkeyed(keyed, config, fp, sha) is None
    assert snapshot(legacy) == before and not any(keyed.iterdir())


def test_committed_run_files_keep_their_identity_and_load_in_the_report():
    sha = {"train": "0" * 64, "valid": "1" * 64, "test": "2" * 64}
    for path in sorted(COMMITTED.glob("*/config.json")):
        stored = json.loads(path.read_text())
        today = Config.from_dict(stored)  # fields it lacks take their defaults
        assert identity.recorded_fingerprint(stored, stored.get("fingerprint"), sha) == (
            stored.get("fingerprint") or identity.fingerprint(today, sha))
    old = json.loads((COMMITTED / "ptb-small-vd-seed1" / "config.json").read_text())
    assert "aug_bias" not in old and "fingerprint" not in old
    assert identity.recorded_fingerprint(old, None, sha) == identity.fingerprint(
        make_config("ptb", "small", "vd"), sha)
    frame = report.load_runs(COMMITTED.parent)
    assert len(frame) == len(list(COMMITTED.glob("*/config.json")))


# --- a clear message for every fault ------------------------------------------------------


class _Unknown:  # a class that torch's safe loader refuses to build
    pass


def _pickled_code(path):
    torch.save({"config": {}, "epoch": _Unknown(), "model": {}}, path)


def _other_vocabulary(path):
    payload = torch.load(path, weights_only=True)
    payload.pop("fingerprint")  # a pre-fingerprint file: its config matches, its weights not
    payload["model"]["embedding.weight"] = torch.zeros(7, 200)
    torch.save(payload, path)


DAMAGE = {
    "empty": (lambda p: p.write_bytes(b""), "truncated or corrupt (empty)"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:2000]), "truncated or corrupt"),
    "not a checkpoint": (lambda p: p.write_bytes(b"lmtie" * 400), "is not an lmtie checkpoint"),
    "json": (lambda p: p.write_text('{"config": {}}'), "is not an lmtie checkpoint"),
    "pickled code": (_pickled_code, "loading anything else could run code"),
    "no weights": (lambda p: torch.save({"weights": torch.zeros(3)}, p), "no config, epoch"),
    "other vocabulary": (_other_vocabulary, "its weights do not fit this model"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_corrupt_or_foreign_checkpoint(lab, corpus, capsys, damage):
    spoil, phrase = DAMAGE[damage]
    for name, argv in (("last.pt", train_vd(lab, "--resume")),
                       ("best.pt", ["evaluate", lab / "runs" / VD, "--checkpoint-dir",
                                    lab / "ckpt" / "vd"])):
        spoil(lab / "ckpt" / "vd" / name)
        refused(capsys, argv, str(lab / "ckpt" / "vd" / name), phrase, corpus=corpus,
                unchanged=[lab])


@pytest.mark.parametrize("flag", ["--results-dir", "--checkpoint-dir"])
def test_unwritable_folder_is_refused_before_training(corpus, tmp_path, monkeypatch, capsys,
                                                      flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setattr(train, "train_epoch", lambda *a, **k: pytest.fail("trained"))
    for module in (train, analysis):
        monkeypatch.setattr(module, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    folders = {"--results-dir": tmp_path / "R", "--checkpoint-dir": tmp_path / "C",
               flag: blocker / "sub"}
    refused(capsys, ["train", "--variant", "vd", "--epochs", "2",
                     *(x for item in folders.items() for x in item)],
            "cannot write to", str(blocker / "sub"), corpus=corpus, unchanged=[tmp_path])


def test_unwritable_checkpoint_folder_is_refused_before_test_evaluation(lab, corpus, tmp_path,
                                                                        monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    for module in (train, analysis):
        monkeypatch.setattr(module, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    refused(capsys, ["evaluate", lab / "runs" / VD, "--checkpoint-dir", blocker / "sub"],
            "cannot write to the checkpoint folder", corpus=corpus, unchanged=[tmp_path])


def test_full_disk_keeps_the_last_good_checkpoint(lab, corpus, tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def disk_full_at_epoch_2(obj, file, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2 and "optimizer" in obj:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_epoch_2)
    argv = ["train", "--variant", "vd", "--epochs", "2", "--results-dir", tmp_path / "R",
            "--checkpoint-dir", tmp_path / "C"]
    code, _, err = lmtie(capsys, *argv, corpus=corpus)
    assert code == 2 and "Traceback" not in err
    assert f"no space left on {tmp_path / 'C'}" in err and "last good checkpoint" in err
    assert runs.load_checkpoint(tmp_path / "C" / "last.pt")["epoch"] == 1
    assert not list((tmp_path / "C").glob(".*.tmp"))
    assert len(atomic.read_jsonl(tmp_path / "R" / "runs" / VD / "metrics.jsonl")) == 1
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run resumes
    assert lmtie(capsys, *argv, "--resume", corpus=corpus)[0] == 0
    assert without_times(atomic.read_jsonl(tmp_path / "R" / "runs" / VD / "metrics.jsonl")) == \
        without_times(atomic.read_jsonl(lab / "runs" / VD / "metrics.jsonl"))


def test_orphan_temporary_files_are_cleaned_on_the_next_start(lab, corpus, capsys):
    orphans = [lab / "runs" / VD / ".metrics.jsonl.k3j4x_.tmp",
               lab / "ckpt" / "vd" / ".last.pt.q8w2e9.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"torn")
    code, out, err = lmtie(capsys, *train_vd(lab, "--resume"), corpus=corpus)
    assert code == 0, err
    assert not any(o.exists() for o in orphans)
    assert all(f"removed {o}" in out for o in orphans)


def test_evaluate_something_that_is_not_a_run(lab, corpus, tmp_path, capsys):
    refused(capsys, ["evaluate", tmp_path / "nothing"], "is not a run dir (no config.json)",
            corpus=corpus, unchanged=[tmp_path])
