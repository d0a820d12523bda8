"""lmtie.data: discovery, integrity check, vocabulary, batchify / bptt alignment."""

import hashlib
import itertools
import shutil
import time
from pathlib import Path

import pytest
import torch

from lmtie import data
from lmtie.data import (
    Corpus,
    Vocabulary,
    batchify,
    bptt_batches,
    check_corpus,
    find_split_files,
    num_bptt_batches,
    resolve_data_dir,
)

PTB_FIRST_LINE = ["aer", "banknote", "berlitz", "calloway", "centrust", "cluett", "fromstein",
                  "gitano", "guterman", "hydro-quebec", "ipo", "kia", "memotec", "mlx", "nahb",
                  "punts", "rake", "regatta", "rubens", "sim", "snack-food", "ssangyong", "swapo",
                  "wachter"]


def _need(data_dir: Path, corpus: str) -> Path:
    if not (data_dir / corpus).is_dir():
        pytest.skip(f"{data_dir / corpus} is missing")
    return data_dir


@pytest.fixture(scope="module")
def ptb(data_dir: Path) -> Corpus:
    _need(data_dir, "ptb")
    start = time.perf_counter()
    corpus = Corpus("ptb", data_dir, verify=True)
    corpus.load_seconds = time.perf_counter() - start
    return corpus


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- real corpora
def test_ptb_counts_vocab_sha_and_first_words(ptb: Corpus) -> None:
    assert [len(ptb.train), len(ptb.valid), len(ptb.test)] == [929_589, 73_760, 82_430]
    assert len(ptb.vocab) == 10_000 and ptb.summary["vocab_size"] == 10_000
    for split in data.SPLITS:
        assert ptb.summary[split]["sha256"] == data.EXPECTED["ptb"]["sha256"][split]
        assert getattr(ptb, split).dtype == torch.int64
        assert int(getattr(ptb, split).max()) < 10_000
    # ids follow first appearance: the first line is ids 0..23, then <eos> = 24
    assert ptb.train[:25].tolist() == list(range(25))
    assert [ptb.vocab.itos[i] for i in ptb.train[:30]] == [
        *PTB_FIRST_LINE, "<eos>", "pierre", "<unk>", "N", "years", "old"]
    assert ptb.vocab.itos[24] == "<eos>" and ptb.vocab.stoi["<unk>"] == 26
    assert ptb.load_seconds < 3.0


def test_wikitext2_counts_and_both_layouts(data_dir: Path, tmp_path: Path) -> None:
    _need(data_dir, "wikitext-2")
    summary = check_corpus("wikitext-2", data_dir)
    assert [summary[s]["tokens"] for s in data.SPLITS] == [2_088_628, 217_646, 245_569]
    assert summary["vocab_size"] == 33_278
    # the zip's wiki.{split}.tokens names: same bytes, so the same known hash applies
    (tmp_path / "wikitext-2").mkdir()
    for split in data.SPLITS:
        (tmp_path / "wikitext-2" / f"wiki.{split}.tokens").symlink_to(
            data_dir / "wikitext-2" / f"{split}.txt")
    files = find_split_files("wikitext-2", tmp_path)
    assert [p.name for p in files.values()] == [f"wiki.{s}.tokens" for s in data.SPLITS]
    other = check_corpus("wikitext-2", tmp_path)
    assert [other[s]["sha256"] for s in data.SPLITS] == [summary[s]["sha256"] for s in data.SPLITS]


def test_corrupt_copy_names_file_expected_and_actual(data_dir: Path, tmp_path: Path) -> None:
    _need(data_dir, "ptb")
    shutil.copytree(data_dir / "ptb", tmp_path / "ptb")
    valid = tmp_path / "ptb" / "ptb.valid.txt"
    valid.chmod(0o644)
    with valid.open("a", encoding="utf-8") as f:
        f.write("the the\n")  # 2 words + <eos>
    actual_sha = hashlib.sha256(valid.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        check_corpus("ptb", tmp_path)
    msg = str(err.value)
    assert str(valid) in msg and "73760" in msg and "73763" in msg
    assert data.EXPECTED["ptb"]["sha256"]["valid"] in msg and actual_sha in msg
    assert "lmtie data download ptb" in msg and "ptb.train.txt" not in msg

    train = tmp_path / "ptb" / "ptb.train.txt"
    train.chmod(0o644)
    shutil.copyfile(data_dir / "ptb" / "ptb.valid.txt", valid)
    with train.open("a", encoding="utf-8") as f:
        f.write("zzyzx\n")  # a new word: vocabulary 10001
    with pytest.raises(ValueError, match=r"vocabulary size expected 10000, got 10001") as err:
        check_corpus("ptb", tmp_path)
    assert str(train) in str(err.value) and "ptb.valid.txt" not in str(err.value)


# ----------------------------------------------------------------------------- discovery
def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMTIE_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path.resolve() / "data"
    monkeypatch.setenv("LMTIE_DATA_DIR", "env-dir")
    assert resolve_data_dir() == tmp_path.resolve() / "env-dir"
    assert resolve_data_dir("flag") == tmp_path.resolve() / "flag"
    assert resolve_data_dir(tmp_path / "abs") == tmp_path.resolve() / "abs"


def test_find_split_files_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ptb, wikitext-2"):
        find_split_files("ptb-large", tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        find_split_files("ptb", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "ptb") in msg and f"lmtie data download ptb --dest {tmp_path}" in msg
    assert "LMTIE_DATA_DIR" in msg and "--data-dir" in msg
    _write(tmp_path / "wikitext-2", {"train.txt": "a\n"})
    with pytest.raises(FileNotFoundError) as err:
        find_split_files("wikitext-2", tmp_path)
    assert str(tmp_path / "wikitext-2" / "valid.txt") in str(err.value)
    assert "wiki.test.tokens" in str(err.value)
    _write(tmp_path / "wikitext-2", {"valid.txt": "a\n", "test.txt": "a\n"})
    assert find_split_files("wikitext-2", tmp_path)["test"] == tmp_path / "wikitext-2" / "test.txt"


def test_fake_corpus_with_monkeypatched_expected(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "ptb", {"ptb.train.txt": " a b  c\nb <unk>\n", "ptb.valid.txt": "c a\n",
                              "ptb.test.txt": "\n<unk>\n"})
    monkeypatch.setitem(data.EXPECTED, "ptb", {"tokens": {"train": 7, "valid": 3, "test": 3},
                                               "vocab_size": 5, "sha256": None})
    monkeypatch.setenv("LMTIE_DATA_DIR", str(tmp_path))
    corpus = Corpus("ptb")  # data dir from the environment
    assert corpus.data_dir == tmp_path.resolve()
    assert corpus.vocab.itos == ["a", "b", "c", "<eos>", "<unk>"]
    assert corpus.train.tolist() == [0, 1, 2, 3, 1, 4, 3]
    assert corpus.valid.tolist() == [2, 0, 3] and corpus.test.tolist() == [3, 4, 3]
    assert corpus.summary["test"]["tokens"] == 3

    monkeypatch.setitem(data.EXPECTED["ptb"], "vocab_size", 6)
    with pytest.raises(ValueError, match="vocabulary size expected 6, got 5"):
        Corpus("ptb")
    assert len(Corpus("ptb", verify=False).vocab) == 5

    _write(tmp_path / "ptb", {"ptb.valid.txt": "c zebra a\n"})
    with pytest.raises(ValueError, match="zebra") as err:
        Corpus("ptb", verify=False)
    assert "ptb.valid.txt" in str(err.value)


def test_vocabulary() -> None:
    vocab = Vocabulary.from_tokens(["b", "a", "b", "<eos>", "c"])
    assert vocab.itos == ["b", "a", "<eos>", "c"] and len(vocab) == 4
    assert vocab.stoi == {"b": 0, "a": 1, "<eos>": 2, "c": 3}
    assert vocab.encode(iter(["c", "a"])) == [3, 1]
    with pytest.raises(ValueError, match="'x'"):
        vocab.encode(["a", "x"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "a"])


# ----------------------------------------------------------------------------- batching
def test_batchify_layout() -> None:
    ids = torch.arange(26)
    out = batchify(ids, 4)
    assert out.shape == (6, 4) and out.dtype == torch.int64 and out.is_contiguous()
    for b in range(4):  # column b is the b-th contiguous chunk
        assert out[:, b].tolist() == list(range(6 * b, 6 * b + 6))
    assert out.t().reshape(-1).tolist() == list(range(24))  # "y z" (24, 25) dropped
    assert batchify(ids, 1).shape == (26, 1) and batchify(ids, 13).shape == (2, 13)


@pytest.mark.parametrize(("ids", "batch_size"),
                         [(torch.arange(10), 0), (torch.arange(10), -2), (torch.arange(7), 4),
                          (torch.arange(0), 1), (torch.arange(12).view(3, 4), 2)])
def test_batchify_rejects(ids: torch.Tensor, batch_size: int) -> None:
    with pytest.raises(ValueError):
        batchify(ids, batch_size)


@pytest.mark.parametrize(("n", "batch_size", "bptt", "lengths"),
                         [(26, 4, 2, [2, 2, 1]), (26, 4, 5, [5]), (26, 4, 6, [5]),
                          (26, 4, 1, [1] * 5), (27, 1, 35, [26]), (1000, 7, 35, [35] * 4 + [1])])
def test_bptt_alignment(n: int, batch_size: int, bptt: int, lengths: list[int]) -> None:
    ids = torch.randperm(n)  # distinct values: any misalignment shows
    batched = batchify(ids, batch_size)
    batches = list(bptt_batches(batched, bptt))
    assert [x.shape[0] for x, _ in batches] == lengths
    assert num_bptt_batches(batched, bptt) == len(batches)
    assert all(t.shape == x.shape and x.shape[0] >= 1 for x, t in batches)
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([t for _, t in batches])
    assert torch.equal(inputs, batched[:-1]) and torch.equal(targets, batched[1:])
    for (_, t0), (x1, _) in itertools.pairwise(batches):
        assert torch.equal(t0[-1], x1[0])  # target of a segment's last step = next input
    # column by column, inputs + final target rebuild the original stream
    rows = batched.shape[0]
    stream = torch.cat([torch.cat([inputs[:, b], targets[-1:, b]]) for b in range(batch_size)])
    assert torch.equal(stream, ids[: rows * batch_size])


def test_bptt_short_last_segment_and_errors() -> None:
    batched = batchify(torch.arange(40), 4)  # 10 rows -> 9 input rows
    batches = list(bptt_batches(batched, 4))
    assert [x.shape[0] for x, _ in batches] == [4, 4, 1]
    assert batches[-1][0].tolist() == [[8, 18, 28, 38]]
    assert batches[-1][1].tolist() == [[9, 19, 29, 39]]
    with pytest.raises(ValueError, match="bptt"):
        bptt_batches(batched, 0)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="batchify"):
        num_bptt_batches(torch.arange(10), 3)
    assert num_bptt_batches(batched[:1], 3) == 0 and list(bptt_batches(batched[:1], 3)) == []
