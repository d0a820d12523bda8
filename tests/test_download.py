"""lmtie.download: fake archives served on 127.0.0.1; atomic install, no traversal."""

import functools
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli_flags

from lmtie import data
from lmtie.cli import main
from lmtie.data import Corpus
from lmtie.download import URLS, DownloadError, download_corpus

# train: 3+1 + 2+1 = 7 tokens, vocabulary {a, b, c, <eos>, <unk>} = 5; valid 3; test 1+2 = 3
TEXTS = {"train": "a b c\nb <unk>\n", "valid": "c a\n", "test": "\n<unk>\n"}
PTB_NAMES = {s: f"simple-examples/data/ptb.{s}.txt" for s in data.SPLITS}
WT2_NAMES = {s: f"wikitext-2/wiki.{s}.tokens" for s in data.SPLITS}


def _expected(texts: dict[str, str]) -> dict:
    return {"tokens": {"train": 7, "valid": 3, "test": 3}, "vocab_size": 5,
            "sha256": {s: hashlib.sha256(t.encode()).hexdigest() for s, t in texts.items()}}


@pytest.fixture(autouse=True)
def fake_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    for corpus in data.CORPORA:
        monkeypatch.setitem(data.EXPECTED, corpus, _expected(TEXTS))


def make_tgz(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    return path


def make_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def ptb_files(texts: dict[str, str] = TEXTS) -> dict[str, str]:
    files = {PTB_NAMES[s]: texts[s] for s in data.SPLITS}
    files["simple-examples/README"] = "not a split\n"  # must not be installed
    return files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) on 127.0.0.1, a free port, in a background thread."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_urls_are_the_canonical_archives() -> None:
    assert URLS["ptb"].endswith("imikolov/rnnlm/simple-examples.tgz")
    assert URLS["wikitext-2"].endswith("/wikitext/wikitext-2-v1.zip")


def test_ptb_download_lands_and_loads(serve: tuple[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    base, root = serve
    make_tgz(root / "simple-examples.tgz", ptb_files())
    dest = tmp_path / "dest"
    out = download_corpus("ptb", dest, url=f"{base}/simple-examples.tgz", progress=False)
    assert out == dest.resolve() / "ptb"
    assert sorted(p.name for p in dest.iterdir()) == ["ptb"]  # temp folder gone
    assert sorted(p.name for p in out.iterdir()) == [f"ptb.{s}.txt" for s in
                                                    ("test", "train", "valid")]
    assert (out / "ptb.train.txt").read_text() == TEXTS["train"]
    corpus = Corpus("ptb", dest, verify=True)
    assert [len(corpus.train), len(corpus.valid), len(corpus.test)] == [7, 3, 3]
    assert corpus.vocab.itos == ["a", "b", "c", "<eos>", "<unk>"]
    # a second call finds the verified copy and never touches the (dead) URL
    capsys.readouterr()
    assert download_corpus("ptb", dest, url=f"{base}/gone.tgz", progress=False) == out
    assert "already present" in capsys.readouterr().out


def test_wikitext2_zip_lands_and_loads(serve: tuple[str, Path], tmp_path: Path) -> None:
    base, root = serve
    make_zip(root / "wikitext-2-v1.zip",
             {**{WT2_NAMES[s]: TEXTS[s] for s in data.SPLITS}, "wikitext-2/": ""})
    out = download_corpus("wikitext-2", tmp_path / "d", url=f"{base}/wikitext-2-v1.zip",
                          progress=True)
    assert sorted(p.name for p in out.iterdir()) == [f"wiki.{s}.tokens" for s in
                                                    ("test", "train", "valid")]
    corpus = Corpus("wikitext-2", tmp_path / "d", verify=True)
    assert corpus.test.tolist() == [3, 4, 3]


def test_local_archive_path(tmp_path: Path) -> None:
    archive = make_tgz(tmp_path / "simple-examples.tgz", ptb_files())
    out = download_corpus("ptb", tmp_path / "d", url=str(archive), progress=False)
    assert len(Corpus("ptb", tmp_path / "d").train) == 7 and out.name == "ptb"


def test_corrupt_archive_leaves_no_folder(serve: tuple[str, Path], tmp_path: Path) -> None:
    base, root = serve
    make_tgz(root / "bad.tgz", ptb_files({**TEXTS, "valid": "c a b\n"}))  # 4 tokens, not 3
    dest = tmp_path / "dest"
    with pytest.raises(ValueError) as err:
        download_corpus("ptb", dest, url=f"{base}/bad.tgz", progress=False)
    msg = str(err.value)
    assert "ptb.valid.txt: tokens expected 3, got 4" in msg and "nothing was installed" in msg
    assert list(dest.iterdir()) == []

    (root / "junk.tgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="archive"):
        download_corpus("ptb", dest, url=f"{base}/junk.tgz", progress=False)
    make_tgz(root / "short.tgz", {PTB_NAMES["train"]: TEXTS["train"]})
    with pytest.raises(ValueError, match=r"ptb\.valid\.txt"):
        download_corpus("ptb", dest, url=f"{base}/short.tgz", progress=False)
    assert list(dest.iterdir()) == []


def test_zip_traversal_raises_and_writes_nothing_outside(tmp_path: Path) -> None:
    files = {WT2_NAMES[s]: TEXTS[s] for s in data.SPLITS}
    # from dest/.lmtie-*/extracted, ../../../evil would land in tmp_path
    archive = make_zip(tmp_path / "evil.zip", {**files, "../evil": "x", "../../../evil": "x"})
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="unsafe"):
        download_corpus("wikitext-2", dest, url=str(archive), progress=False)
    assert not (tmp_path / "evil").exists() and list(dest.iterdir()) == []


def test_tar_symlink_member_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        for split in ("valid", "test"):
            info = tarfile.TarInfo(PTB_NAMES[split])
            info.size = len(TEXTS[split])
            tf.addfile(info, io.BytesIO(TEXTS[split].encode()))
        link = tarfile.TarInfo(PTB_NAMES["train"])
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/hostname"
        tf.addfile(link)
    with pytest.raises(ValueError, match="not a regular file"):
        download_corpus("ptb", tmp_path / "dest", url=str(archive), progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_network_errors_say_how_to_download_by_hand(serve: tuple[str, Path],
                                                    tmp_path: Path) -> None:
    base, _ = serve
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    dest = tmp_path / "dest"
    for url in (f"{base}/missing.tgz", f"http://127.0.0.1:{closed}/simple-examples.tgz",
                str(tmp_path / "no-such.tgz")):
        with pytest.raises(DownloadError) as err:
            download_corpus("ptb", dest, url=url, progress=False)
        msg = str(err.value)
        assert url in msg and "by hand" in msg and f"LMTIE_DATA_DIR={dest.resolve()}" in msg
        assert isinstance(err.value, RuntimeError) and list(dest.iterdir()) == []


def test_existing_bad_copy_and_unknown_corpus(tmp_path: Path) -> None:
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text("mine\n")
    with pytest.raises(ValueError, match="exists but fails its check"):
        download_corpus("ptb", tmp_path, url="http://127.0.0.1:9/never", progress=False)
    assert (tmp_path / "ptb" / "ptb.train.txt").read_text() == "mine\n"  # left untouched
    with pytest.raises(ValueError, match="ptb, wikitext-2"):
        download_corpus("ptb2", tmp_path)


def test_the_advice_names_options_that_exist_and_the_advised_command_works(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DownloadError) as caught:
        download_corpus("ptb", tmp_path / "dest", url=str(tmp_path / "missing.tgz"),
                        progress=False)
    named = set(re.findall(r"--[a-z][a-z-]+", str(caught.value)))
    assert "--url" in named and named <= cli_flags("data", "train")
    archive = make_tgz(tmp_path / "simple-examples.tgz", ptb_files())  # the archive by hand
    assert main(["data", "download", "ptb", "--url", str(archive), "--dest",
                 str(tmp_path / "dest")]) == 0, capsys.readouterr().err
    assert len(Corpus("ptb", tmp_path / "dest").train) == 7
