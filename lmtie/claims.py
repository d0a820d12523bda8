"""The claims ledger: every checkable claim of Sec. 6.3-6.4, checked on our runs across seeds.

A claim compares two variants of one (corpus, size) cell on one number of their finished
full-schedule runs (test perplexity, or a test-set statistic of ``test_statistics.json``). Runs of
the two variants are paired by seed; the ledger gives the per-seed differences, their mean ±
sample standard deviation, a one-sided paired t-test (``scipy.stats.ttest_rel``; n ≥ 2) and
the status: **holds** (the paper's direction in every seed), **fails** (the other direction in
every seed), **mixed**, **not testable here** (a variant has no finished run: the command that
would make it) or **no data** (the runs predate the number).

Paper: Sec. 6.3 (Table 1's pattern), Sec. 6.4 (qualitative claims; our measurement over the
whole test set, Decision E1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from lmtie import reference
from lmtie.config import VARIANT_LABELS, VARIANTS, preset_configs
from lmtie.tables import GAP_TOLERANCE

LEDGER_COLUMNS = ["corpus", "size", "claim", "number", "status", "n", "per_seed", "mean_diff",
                  "std_diff", "p_value", "paper", "command"]
# Sec. 6.4, +REAL against VD-LSTM: (field of test_statistics.json, lower is the claim, wording)
MASS_CLAIMS = (
    ("mean_p_unk", True, "less mass to <unk>"),
    ("mean_p_articles", True, "less mass to a/an/the"),
    ("mean_p_neighbours", False, "more mass to the target's 10 nearest words in L"),
    ("mean_target_rank", True, "a lower mean rank of the target"),
)


def _orderings(size: str) -> list[tuple[str, str]]:
    """(lower, higher) test-perplexity pairs of Sec. 6.3 for ``size``: +REAL best, each
    variant below VD-LSTM, +AL below +RE for small and +RE below +AL for medium and large."""
    pairs = [("real", "vd"), ("real", "al"), ("real", "re"), ("al", "vd"), ("re", "vd")]
    return [*pairs, ("al", "re") if size == "small" else ("re", "al")]


def _paper_text(corpus: str, size: str, lower: str, higher: str) -> str:
    numbers = [reference.paper_perplexity(corpus, size, v) for v in (lower, higher)]
    if None in numbers:
        return "not in the paper"
    return (f"{VARIANT_LABELS[lower]} {numbers[0][1]:.1f} vs {VARIANT_LABELS[higher]} "
            f"{numbers[1][1]:.1f}")


def _compare(lower: pd.Series, higher: pd.Series, less: bool) -> dict:
    """Status and statistics of "``lower`` < ``higher``" (or ">" when not ``less``) over the
    seeds both have (Series indexed by seed; NaN = the number is missing)."""
    both = pd.concat([lower, higher], axis=1, join="inner").dropna()
    if both.empty:
        return {"status": "no data", "n": 0}
    x, y = both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)
    diff = x - y
    right = diff < 0 if less else diff > 0
    status = "holds" if right.all() else "fails" if (~right).all() else "mixed"
    p_value = (scipy.stats.ttest_rel(x, y, alternative="less" if less else "greater").pvalue
               if len(diff) >= 2 and diff.std() > 0 else np.nan)  # t undefined otherwise
    return {"status": status, "n": len(diff),
            "per_seed": ", ".join(f"seed {s}: {d:+.3g}" for s, d in zip(both.index, diff,
                                                                          strict=True)),
            "mean_diff": float(diff.mean()),
            "std_diff": float(diff.std(ddof=1)) if len(diff) >= 2 else np.nan,
            "p_value": float(p_value)}


def ledger(runs_frame: pd.DataFrame, schedule: str = "full") -> pd.DataFrame:
    """Every claim of every Table 1 cell (``LEDGER_COLUMNS``), from a ``report.load_runs``
    frame: the finished runs whose ``suffix`` is ``schedule`` count ("full": the paper's
    schedule; "smoke" for the smoke preset), any seed; ablations never do. ``number`` is
    what is compared (``test_ppl`` or a ``test_statistics.json`` field);
    ``mean_diff`` = mean over seeds of (first − second variant); ``command`` says how to
    make the missing runs of a claim that is not testable here.

    Raises: KeyError if ``runs_frame`` lacks a column of ``report.RUN_COLUMNS``.
    """
    done = runs_frame[(runs_frame["status"] == "finished") & (runs_frame["suffix"] == schedule)
                      & ~runs_frame["valid_only"].astype(bool)]
    rows = []
    for config in preset_configs("paper"):
        if config.variant != "vd":
            continue  # one pass per cell
        corpus, size = config.corpus, config.size
        cell = done[(done["corpus"] == corpus) & (done["size"] == size)]
        if cell.empty:  # one row for the whole cell
            rows.append({"corpus": corpus, "size": size, "status": "not testable here",
                         "n": 0, "claim": "Sec. 6.3 pattern and Sec. 6.4 claims",
                         "command": f"lmtie train --corpus {corpus} --size {size} --variant "
                                    "V  (V = vd, al, re, real; or lmtie reproduce --preset "
                                    "paper)"})
            continue
        by_variant = {v: g.set_index("seed") for v, g in cell.groupby("variant")}
        specs = [(f"{VARIANT_LABELS[a]} below {VARIANT_LABELS[b]} (test perplexity)",
                  "test_ppl", a, b, True, _paper_text(corpus, size, a, b))
                 for a, b in _orderings(size)]
        specs += [(f"{VARIANT_LABELS['real']} gives {text} than {VARIANT_LABELS['vd']}",
                   field, "real", "vd", less, "Sec. 6.4 (large models, four phrases)")
                  for field, less, text in MASS_CLAIMS]
        for claim, field, a, b, less, paper in specs:
            row = {"corpus": corpus, "size": size, "claim": claim, "number": field,
                   "paper": paper}
            missing = [v for v in (a, b) if v not in by_variant]
            if missing:
                rows.append({**row, "status": "not testable here", "n": 0,
                             "command": "; ".join(f"lmtie train --corpus {corpus} --size "
                                                  f"{size} --variant {v}" for v in missing)})
                continue
            values = [by_variant[v][field] if field in by_variant[v] else pd.Series(
                np.nan, index=by_variant[v].index) for v in (a, b)]
            rows.append({**row, **_compare(*values, less)})
        for variant in VARIANTS:
            paper = reference.paper_perplexity(corpus, size, variant)
            if paper is None or variant not in by_variant:
                continue
            runs = by_variant[variant]
            gap = runs["test_ppl"] - paper[1]
            rows.append({"corpus": corpus, "size": size, "number": "test_ppl",
                         "claim": f"{VARIANT_LABELS[variant]} within {GAP_TOLERANCE:g} of the "
                                  "paper's test perplexity",
                         "status": "holds" if (gap.abs() <= GAP_TOLERANCE).all() else
                         "fails" if (gap.abs() > GAP_TOLERANCE).all() else "mixed",
                         "n": len(gap), "per_seed": ", ".join(
                             f"seed {s}: {g:+.3g}" for s, g in gap.items()),
                         "mean_diff": float(gap.mean()),
                         "std_diff": float(gap.std(ddof=1)) if len(gap) >= 2 else np.nan,
                         "paper": f"{paper[1]:.1f}"})
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS)
