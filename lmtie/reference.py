"""The paper's numbers, with provenance (docs/paper.md §5 and §7). Nothing here is ours.

Table 1: PTB columns from arXiv:1611.01462 v1 Table 1; WikiText-2 columns from v3 Table 1.
Table 3 (v1): top next-word probabilities of the large VD-LSTM and +REAL on four PTB test
phrases; the paper prints the first words of each list, which is all we keep.
"""

from __future__ import annotations

# (corpus, size, variant) -> (valid perplexity, test perplexity, source)
TABLE1: dict[tuple[str, str, str], tuple[float, float, str]] = {}
_PTB = {  # v1 Table 1
    "small": {"vd": (92.6, 87.3), "al": (86.3, 82.9), "re": (89.9, 85.1), "real": (86.3, 82.7)},
    "medium": {"vd": (82.0, 77.7), "al": (77.4, 74.7), "re": (77.1, 73.9), "real": (75.7, 73.2)},
    "large": {"vd": (76.8, 72.6), "al": (74.5, 71.2), "re": (72.5, 69.0), "real": (71.1, 68.5)},
}
_WT2 = {  # v3 Table 1 (no VD-LSTM rows, no large model)
    "small": {"al": (110.3, 103.8), "re": (106.1, 100.5), "real": (105.6, 98.9)},
    "medium": {"al": (98.8, 93.1), "re": (92.3, 87.7), "real": (91.5, 87.0)},
}
for _corpus, _table, _source in (("ptb", _PTB, "v1 Table 1"), ("wikitext-2", _WT2, "v3 Table 1")):
    for _size, _rows in _table.items():
        for _variant, (_valid, _test) in _rows.items():
            TABLE1[(_corpus, _size, _variant)] = (_valid, _test, _source)

# Unique parameters (tied counted once), docs/paper.md §5: (corpus, size, tied) -> millions.
N_PARAMS_M = {
    ("ptb", "small", False): 4.65, ("ptb", "medium", False): 19.8, ("ptb", "large", False): 66.0,
    ("ptb", "small", True): 2.64, ("ptb", "medium", True): 13.3, ("ptb", "large", True): 51.0,
    ("wikitext-2", "medium", True): 28.4,
}

# v1 Table 3: (context, target word, VD-LSTM top words, +REAL top words) as printed.
PHRASES: list[dict] = [
    {
        "context": "information international said it believes that the complaints filed in",
        "target": "federal",
        "vd": [("the", 0.27), ("a", 0.13), ("federal", 0.13), ("N", 0.09), ("<unk>", 0.05)],
        "real": [("federal", 0.22), ("the", 0.10), ("a", 0.08)],
    },
    {
        "context": "oil company refineries ran flat out to prepare for a robust holiday "
                   "driving season in july and",
        "target": "august",
        "vd": [("the", 0.09), ("N", 0.08), ("a", 0.07), ("<unk>", 0.07)],
        "real": [("august", 0.08), ("N", 0.05), ("early", 0.05)],
    },
    {
        "context": "southmark said it plans to <unk> its <unk> to provide financial results "
                   "as soon as its audit is",
        "target": "completed",
        "vd": [("the", 0.06), ("<unk>", 0.05)],
        "real": [("expected", 0.10), ("completed", 0.04)],
    },
    {
        "context": "merieux said the government 's minister of industry science and",
        "target": "technology",
        "vd": [("<unk>", 0.33), ("the", 0.06)],
        "real": [("<unk>", 0.09), ("health", 0.08), ("development", 0.04)],
    },
]

# Sec. 6.2, Figure 1 (read off the figure): tau = 10.
FIGURE1 = {"beta0_tau10": 1.0, "beta1_tau10": 0.06}


def paper_perplexity(corpus: str, size: str, variant: str) -> tuple[float, float] | None:
    """(valid, test) perplexity the paper reports, or None where it reports none."""
    row = TABLE1.get((corpus, size, variant))
    return None if row is None else row[:2]
