"""The claims ledger against hand-computed paired statistics."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from lmtie import claims
from lmtie.report import RUN_COLUMNS


def frame(rows):
    base = {"status": "finished", "suffix": "full", "valid_only": False, "corpus": "ptb",
            "size": "small", "mean_p_unk": 0.05, "mean_target_rank": 300.0,
            "mean_p_articles": np.nan, "mean_p_neighbours": np.nan}
    return pd.DataFrame([{**base, **r} for r in rows]).reindex(columns=RUN_COLUMNS)


def test_paired_ordering_over_seeds():
    test = {"vd": [88, 89, 90.5], "al": [87, 87, 87.5], "re": [87.5, 89.5, 86], "real": [100] * 3}
    rows = [{"variant": v, "seed": s + 1, "test_ppl": t[s]} for v, t in test.items()
            for s in range(3)]
    # a shortened run and an ablation never count
    rows += [{"variant": "real", "seed": 1, "test_ppl": 50.0, "suffix": "e10"},
             {"variant": "real", "seed": 2, "test_ppl": 50.0, "valid_only": True}]
    table = claims.ledger(frame(rows)).set_index("claim")
    row = table.loc["+AL below VD-LSTM (test perplexity)"]  # differences -1, -2, -3
    assert row["status"] == "holds" and row["n"] == 3
    assert row["mean_diff"] == pytest.approx(-2) and row["std_diff"] == pytest.approx(1)
    t = -2 / (1 / math.sqrt(3))
    assert row["p_value"] == pytest.approx(scipy.stats.t.cdf(t, df=2))
    assert row["per_seed"] == "seed 1: -1, seed 2: -2, seed 3: -3"
    assert table.loc["+RE below VD-LSTM (test perplexity)", "status"] == "mixed"  # -.5 +.5 -4.5
    assert table.loc["+REAL below +RE (test perplexity)", "status"] == "fails"
    assert table.loc["+REAL below VD-LSTM (test perplexity)", "mean_diff"] == pytest.approx(
        100 - (88 + 89 + 90.5) / 3)
    within = table.loc["VD-LSTM within 3 of the paper's test perplexity"]  # paper 87.3
    assert within["status"] == "mixed" and within["mean_diff"] == pytest.approx(
        (88 + 89 + 90.5) / 3 - 87.3)  # seed 3: +3.2
    # Sec. 6.4: p(<unk>) equal in every seed is not "less"; articles not measured: no data
    assert table.loc["+REAL gives less mass to <unk> than VD-LSTM", "status"] == "fails"
    assert table.loc["+REAL gives less mass to a/an/the than VD-LSTM", "status"] == "no data"
    others = claims.ledger(frame(rows)).query("size != 'small' or corpus != 'ptb'")
    assert set(others["status"]) == {"not testable here"} and len(others) == 4


def test_a_missing_variant_names_its_command():
    rows = [{"variant": "vd", "seed": 1, "test_ppl": 88.0, "mean_p_neighbours": 0.01},
            {"variant": "real", "seed": 1, "test_ppl": 84.0, "mean_p_neighbours": 0.03}]
    table = claims.ledger(frame(rows)).set_index("claim")
    row = table.loc["+REAL below +AL (test perplexity)"]
    assert row["status"] == "not testable here"
    assert row["command"] == "lmtie train --corpus ptb --size small --variant al"
    row = table.loc["+REAL gives more mass to the target's 10 nearest words in L than VD-LSTM"]
    assert row["status"] == "holds" and row["n"] == 1 and math.isnan(row["p_value"])
