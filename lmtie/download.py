"""Fetch the canonical corpus archives; verify before anything appears at the destination.

Steps: download into a temporary folder inside ``dest`` -> extract only the three split files
(no path traversal) -> :func:`lmtie.data.check_corpus` on the temporary copy -> one ``rename``
to ``dest/<corpus>/``. The temporary folder is removed whatever happens, so an interrupted or
corrupt download never leaves a half corpus behind.
"""

from __future__ import annotations

import gzip
import http.client
import posixpath
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from lmtie import data
from lmtie.config import CORPORA

URLS = {
    "ptb": "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
    "wikitext-2": "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
}
# Member of the archive holding each split; the file keeps its base name on disk
# (``ptb/ptb.{split}.txt``, ``wikitext-2/wiki.{split}.tokens``: both layouts data.py accepts).
MEMBERS = {
    "ptb": "simple-examples/data/ptb.{split}.txt",
    "wikitext-2": "wikitext-2/wiki.{split}.tokens",
}


class DownloadError(RuntimeError):
    """The archive could not be fetched (network, HTTP status, truncated transfer)."""


def _manual_hint(corpus: str, url: str, dest: Path) -> str:
    names = ", ".join(posixpath.basename(MEMBERS[corpus].format(split=s)) for s in data.SPLITS)
    return (f"Download {url} by hand, then install it with `lmtie data download {corpus} "
            f"--url <path of the downloaded archive> --dest {dest}`, or extract {names} into "
            f"{dest / corpus}/ and set {data.DATA_DIR_ENV}={dest} (or pass --data-dir {dest}).")


def _fetch(url: str, out: Path, progress: bool) -> None:
    """Copy ``url`` (http(s)/file URL or a local path) to ``out``; tqdm bar in bytes."""
    if "://" not in url:  # a local archive; a missing one raises FileNotFoundError
        shutil.copyfile(Path(url).expanduser(), out)
        return
    with urllib.request.urlopen(url, timeout=60) as response, open(out, "wb") as file:
        total = int(response.headers.get("Content-Length") or 0) or None
        name = posixpath.basename(urllib.parse.urlparse(url).path) or url
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                  disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                file.write(chunk)
                bar.update(len(chunk))
    if total is not None and out.stat().st_size != total:
        raise DownloadError(f"truncated transfer: got {out.stat().st_size} of {total} bytes")


def _inside(root: Path, name: str) -> bool:
    return (root / name).resolve().is_relative_to(root.resolve())


def _extract(archive: Path, root: Path, corpus: str) -> dict[str, Path]:
    """Extract the split files of ``corpus`` from ``archive`` (tar or zip) under ``root``.

    Returns split -> extracted file. Raises: ValueError for an unreadable archive, a missing or
    non-regular split member, or (zip) any member whose name resolves outside ``root``.
    """
    wanted = {s: MEMBERS[corpus].format(split=s) for s in data.SPLITS}
    root.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):  # first: a zip never passes for a tar, not vice versa
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _inside(root, n)]
                if bad:
                    raise ValueError(f"{archive}: unsafe member name(s) {bad[:3]} point outside "
                                     "the extraction folder; refusing to extract")
                members = {posixpath.normpath(i.filename): i for i in zf.infolist()
                           if not i.is_dir()}
                found = _pick(members, wanted, archive)
                return {s: Path(zf.extract(found[s], root)) for s in data.SPLITS}
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = {posixpath.normpath(m.name): m for m in tf.getmembers()}
                found = _pick(members, wanted, archive)
                if any(not m.isfile() for m in found.values()):
                    raise ValueError(f"{archive}: a split member is not a regular file")
                tf.extractall(root, members=list(found.values()), filter="data")
                return {s: root / found[s].name for s in data.SPLITS}
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{archive}: corrupt or unsafe archive ({err})") from err
    raise ValueError(f"{archive}: neither a tar nor a zip archive")


def _pick(members: dict, wanted: dict[str, str], archive: Path) -> dict:
    missing = [name for name in wanted.values() if name not in members]
    if missing:
        raise ValueError(f"{archive}: missing member(s) {', '.join(missing)}; wrong archive?")
    return {split: members[name] for split, name in wanted.items()}


def download_corpus(corpus: str, dest: str | Path, url: str | None = None,
                    progress: bool = True) -> Path:
    """Download, verify and install ``corpus`` as ``dest/<corpus>/``; return that folder.

    ``url`` defaults to ``URLS[corpus]``; it may also be a ``file://`` URL or a local archive
    path (for machines without network). Does nothing (prints so) if a verified copy is there.
    Raises: ValueError (unknown corpus; existing copy fails its check; corrupt, unsafe or wrong
    archive; files fail :func:`lmtie.data.check_corpus`); DownloadError (a RuntimeError:
    network/HTTP failure, with how to download by hand). Paper: §5 data sets.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    dest = Path(dest).expanduser().resolve()
    target = dest / corpus
    if target.exists():
        try:
            data.check_corpus(corpus, dest)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"{target} exists but fails its check; move it away or delete it, "
                             f"then download again.\n{err}") from err
        print(f"{corpus}: already present and verified at {target}")
        return target
    url = url or URLS[corpus]
    dest.mkdir(parents=True, exist_ok=True)
    # Inside dest, hence on the same filesystem: the final rename is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".lmtie-{corpus}-", dir=dest))
    try:
        archive = tmp / "archive"
        try:
            _fetch(url, archive, progress)
        except (OSError, http.client.HTTPException, DownloadError) as err:
            raise DownloadError(f"could not download {url}: {err}\n"
                                + _manual_hint(corpus, url, dest)) from err
        stage = tmp / "stage" / corpus
        stage.mkdir(parents=True)
        for path in _extract(archive, tmp / "extracted", corpus).values():
            path.rename(stage / path.name)
        try:
            data.check_corpus(corpus, stage.parent)
        except data.CorpusCheckError as err:  # its fix names the temp folder: left out
            problems = "\n  ".join(err.problems)
            raise ValueError(f"the archive from {url} failed verification; nothing was "
                             f"installed at {target}.\n{corpus} failed its integrity check:"
                             f"\n  {problems}") from err
        stage.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{corpus}: downloaded and verified at {target}")
    return target
