"""Word-level corpora on disk: discovery, integrity check, vocabulary, contiguous batching.

Tokens are whitespace-separated words plus one ``<eos>`` per line (Zaremba et al. 2014); rare
words are already ``<unk>`` in both corpora, so valid/test words missing from train are an error.

Batching layout (Zaremba et al.; docs/paper.md "hidden state carried across BPTT segments")::

    stream  a b c d e f g h i j k l m n o p q r s t u v w x y z     N = 26, B = 4
    batchify -> (N // B, B) = (6, 4); trailing "y z" dropped; column b = b-th chunk

              b=0 b=1 b=2 b=3
        row 0  a   g   m   s      bptt_batches(data, bptt=2):
        row 1  b   h   n   t        batch 0: inputs rows 0-1, targets rows 1-2
        row 2  c   i   o   u        batch 1: inputs rows 2-3, targets rows 3-4
        row 3  d   j   p   v        batch 2: inputs row  4,   targets row  5  (T = 1)
        row 4  e   k   q   w
        row 5  f   l   r   x      targets[t, b] is the word after inputs[t, b] in column b

Each column is one contiguous piece of text, so the LSTM state of column b at the end of a batch
is the right initial state for column b of the next batch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from lmtie.config import CORPORA

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
UNK = "<unk>"
DATA_DIR_ENV = "LMTIE_DATA_DIR"

# Accepted file names per corpus, in order of preference (one layout must be complete).
LAYOUTS = {"ptb": ("ptb.{split}.txt",), "wikitext-2": ("{split}.txt", "wiki.{split}.tokens")}

# Known-good values (../shared/data/README.md). Keyed by split: the ``wiki.*.tokens`` files of the
# WikiText-2 zip are the same bytes as ``{split}.txt``. Tests monkeypatch this dict; a ``None``
# sha256 entry means "hash unknown, check counts only".
EXPECTED: dict[str, dict] = {
    "ptb": {
        "tokens": {"train": 929_589, "valid": 73_760, "test": 82_430},
        "vocab_size": 10_000,
        "sha256": {
            "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
    },
    "wikitext-2": {
        "tokens": {"train": 2_088_628, "valid": 217_646, "test": 245_569},
        "vocab_size": 33_278,
        "sha256": {
            "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
    },
}


def _check_name(corpus: str) -> None:
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")


def _fix_hint(corpus: str, data_dir: Path) -> str:
    return (f"run `lmtie data download {corpus} --dest {data_dir}`, or point --data-dir / "
            f"${DATA_DIR_ENV} at the folder that holds {corpus}/")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Data root: ``data_dir`` if given, else ``$LMTIE_DATA_DIR``, else ``./data``.

    Returns an absolute path (relative ones resolved against the current directory). The folder
    need not exist. Raises: nothing. Paper: none.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or "data"
    return Path(data_dir).expanduser().resolve()


def find_split_files(corpus: str, data_dir: Path) -> dict[str, Path]:
    """Paths of the ``train``/``valid``/``test`` files of ``corpus`` under ``data_dir``.

    Layouts: ``ptb/ptb.{split}.txt``; ``wikitext-2/{split}.txt`` or
    ``wikitext-2/wiki.{split}.tokens``. Raises: ValueError for an unknown corpus;
    FileNotFoundError naming the missing paths and the fix (``lmtie data download``,
    ``--data-dir``, ``$LMTIE_DATA_DIR``). Paper: §5 data sets.
    """
    _check_name(corpus)
    folder = Path(data_dir) / corpus
    layouts = [{s: folder / name.format(split=s) for s in SPLITS} for name in LAYOUTS[corpus]]
    for paths in layouts:
        if all(p.is_file() for p in paths.values()):
            return paths
    if not folder.is_dir():
        what = f"no folder {folder}"
    else:
        what = "missing " + ", ".join(str(p) for p in layouts[0].values() if not p.is_file())
        if len(layouts) > 1:
            what += " (also accepted: " + ", ".join(p.name for p in layouts[1].values()) + ")"
    raise FileNotFoundError(f"{corpus}: {what}; {_fix_hint(corpus, Path(data_dir))}")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into words, one ``<eos>`` appended per line (``\\n``-separated).

    Returns a list of ``str`` tokens. Raises: nothing. Paper: Zaremba et al. (2014) convention.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def split_sha256(corpus: str, data_dir: str | Path | None = None) -> dict[str, str]:
    """split -> sha256 hex digest of its file's bytes (what :class:`Corpus` records as
    ``sha256``), without tokenizing. Raises: as :func:`find_split_files`. Paper: none."""
    paths = find_split_files(corpus, resolve_data_dir(data_dir))
    return {split: hashlib.sha256(path.read_bytes()).hexdigest() for split, path in paths.items()}


def _read_splits(paths: dict[str, Path]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One read per file: split -> sha256 hex digest of its bytes, split -> tokens."""
    shas, tokens = {}, {}
    for split, path in paths.items():
        raw = path.read_bytes()
        try:
            tokens[split] = tokenize(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err}); re-download the corpus") from err
        shas[split] = hashlib.sha256(raw).hexdigest()
    return shas, tokens


def _verify(corpus: str, data_dir: Path, paths: dict[str, Path], shas: dict[str, str],
            tokens: dict[str, list[str]], vocab_size: int) -> dict:
    """Compare against ``EXPECTED[corpus]``; one ValueError listing every mismatch."""
    expected = EXPECTED[corpus]
    known_sha = expected.get("sha256") or {}
    problems = []
    for split in SPLITS:
        want = known_sha.get(split)
        if want is not None and shas[split] != want:
            problems.append(f"{paths[split]}: sha256 expected {want}, got {shas[split]}")
        if len(tokens[split]) != expected["tokens"][split]:
            problems.append(f"{paths[split]}: tokens expected {expected['tokens'][split]}, "
                            f"got {len(tokens[split])}")
    if vocab_size != expected["vocab_size"]:
        problems.append(f"{paths['train']}: vocabulary size expected {expected['vocab_size']}, "
                        f"got {vocab_size}")
    if problems:
        raise CorpusCheckError(corpus, problems, _fix_hint(corpus, data_dir))
    summary: dict = {"corpus": corpus, "data_dir": str(data_dir), "vocab_size": vocab_size}
    for split in SPLITS:
        summary[split] = {"path": str(paths[split]), "tokens": len(tokens[split]),
                          "sha256": shas[split]}
    return summary


class CorpusCheckError(ValueError):
    """A corpus failed its integrity check. ``problems``: one line per mismatch (file,
    expected, actual); ``fix``: how to get a good copy. :mod:`lmtie.download` reports the
    problems of an archive it just unpacked without the fix, which names its temp folder."""

    def __init__(self, corpus: str, problems: list[str], fix: str) -> None:
        self.corpus, self.problems, self.fix = corpus, problems, fix
        super().__init__(f"{corpus} failed its integrity check:\n  " + "\n  ".join(problems)
                         + f"\nThe files are corrupt or another version; {fix}")


def check_corpus(corpus: str, data_dir: Path) -> dict:
    """Verify every split: sha256 where known, always token counts and train vocabulary size.

    Returns ``{"corpus", "data_dir", "vocab_size", "train"|"valid"|"test": {"path", "tokens",
    "sha256"}}`` (str/int values, JSON-ready). Raises: ValueError for an unknown corpus;
    :class:`CorpusCheckError` (a ValueError) for any mismatch (names the file, expected and
    actual value); FileNotFoundError as :func:`find_split_files`. Paper: §5 data sets (PTB 10k
    vocabulary, WikiText-2 33,278).
    """
    paths = find_split_files(corpus, data_dir)
    shas, tokens = _read_splits(paths)
    return _verify(corpus, Path(data_dir), paths, shas, tokens, len(set(tokens["train"])))


class Vocabulary:
    """Word <-> id maps: ``itos`` (list, id -> word) and ``stoi`` (dict, word -> id)."""

    def __init__(self, itos: Iterable[str]) -> None:
        """Raises: ValueError if a word appears twice."""
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate words in the vocabulary; pass each word once")

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> Vocabulary:
        """Vocabulary of ``tokens`` in order of first appearance (``<eos>`` included)."""
        return cls(dict.fromkeys(tokens))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Iterable[str]) -> list[int]:
        """Ids of ``words``. Raises: ValueError listing (up to 5) unknown words; map them to
        ``<unk>`` first, as the PTB/WikiText-2 preprocessing does."""
        words = words if isinstance(words, list) else list(words)
        stoi = self.stoi
        try:
            return [stoi[w] for w in words]
        except KeyError:
            unknown = list(dict.fromkeys(w for w in words if w not in stoi))
            raise ValueError(f"{len(unknown)} word(s) not in the vocabulary, e.g. {unknown[:5]}; "
                             f"replace them with {UNK!r}") from None


class Corpus:
    """A corpus as token-id streams: ``train``/``valid``/``test`` int64 tensors of shape ``(N,)``.

    Attributes: ``name``, ``data_dir`` (absolute Path), ``files`` (split -> Path), ``sha256``
    (split -> hex digest of the file, part of a run's fingerprint), ``vocab``
    (:class:`Vocabulary` of train, first-appearance order), ``summary`` (the
    :func:`check_corpus` dict, or None when ``verify=False``). Files are read once; nothing is
    cached on disk (PTB loads in well under a second).

    Raises: ValueError (unknown corpus, failed check, valid/test word not in the train
    vocabulary); FileNotFoundError (missing files, with the fix). Paper: §5 data sets.
    """

    def __init__(self, corpus: str, data_dir: str | Path | None = None,
                 verify: bool = True) -> None:
        self.name = corpus
        self.data_dir = resolve_data_dir(data_dir)
        self.files = find_split_files(corpus, self.data_dir)
        shas, tokens = _read_splits(self.files)
        self.sha256 = shas
        self.vocab = Vocabulary.from_tokens(tokens["train"])
        self.summary = (_verify(corpus, self.data_dir, self.files, shas, tokens, len(self.vocab))
                        if verify else None)
        self.train = self._encode(tokens, "train")
        self.valid = self._encode(tokens, "valid")
        self.test = self._encode(tokens, "test")

    def _encode(self, tokens: dict[str, list[str]], split: str) -> torch.Tensor:
        try:
            return torch.tensor(self.vocab.encode(tokens[split]), dtype=torch.long)
        except ValueError as err:
            raise ValueError(f"{self.files[split]}: {err} (training vocabulary)") from None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s)):,}" for s in SPLITS)
        return f"Corpus({self.name!r}, V={len(self.vocab):,}, {sizes})"


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``B`` contiguous columns (layout in the module docstring).

    ``ids``: ``(N,)`` int64. Returns ``(N // B, B)``, same dtype, contiguous; column ``b`` is
    ``ids[b * L:(b + 1) * L]`` with ``L = N // B``; the trailing ``N % B`` tokens are dropped.
    Raises: ValueError if ``ids`` is not 1-D, ``B <= 0``, or ``N // B < 2`` (no input/target
    pair). Paper: batch 20, contiguous batching (Zaremba et al.).
    """
    if ids.dim() != 1:
        raise ValueError(f"batchify expects a 1-D token stream, got shape {tuple(ids.shape)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    rows = ids.numel() // batch_size
    if rows < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for batch_size {batch_size}: need at "
                         f"least {2 * batch_size} (2 rows); use a smaller batch_size")
    return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()


def _check_bptt(data: torch.Tensor, bptt: int) -> None:
    if data.dim() != 2:
        raise ValueError(f"expected batchified data (L, B), got shape {tuple(data.shape)}; "
                         "call batchify first")
    if bptt <= 0:
        raise ValueError(f"bptt must be a positive integer, got {bptt}")


def bptt_batches(data: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, targets)``, both ``(T, B)`` int64 views of ``data`` ``(L, B)``.

    ``targets = data[i + 1 : i + 1 + T]`` is ``inputs = data[i : i + T]`` shifted one step in
    time, so consecutive batches tile rows ``0..L-1`` without gap or overlap. ``T = bptt``
    except the last segment (``1 <= T <= bptt``). Raises: ValueError for non-2-D data or
    ``bptt <= 0``. Paper: BPTT 35, state carried across segments.
    """
    _check_bptt(data, bptt)  # here, not inside the generator, so bad arguments fail at the call

    def segments() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, data.size(0) - 1, bptt):
            t = min(bptt, data.size(0) - 1 - i)
            yield data[i : i + t], data[i + 1 : i + 1 + t]

    return segments()


def num_bptt_batches(data: torch.Tensor, bptt: int) -> int:
    """Number of batches :func:`bptt_batches` yields: ``ceil((L - 1) / bptt)`` (0 if ``L < 2``).

    Raises: ValueError as :func:`bptt_batches`. Paper: none.
    """
    _check_bptt(data, bptt)
    return max(0, -(-(data.size(0) - 1) // bptt))
