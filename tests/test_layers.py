"""The report side (run files → tables, figures, page) never imports the training code."""

import subprocess
import sys

REPORT_SIDE = ("report", "tables", "claims", "study", "summary", "figures", "figures_spans",
               "render", "schema")
TRAINING = ("lmtie.train", "lmtie.model", "lmtie.loss", "lmtie.figure1")


def test_report_side_imports_no_training_code():
    code = ("import sys\n"
            f"for name in {REPORT_SIDE!r}: __import__('lmtie.' + name)\n"
            f"print([m for m in {TRAINING!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
