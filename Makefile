# Every target bootstraps its own virtual environment (.venv) first.
# Corpora: $LMTIE_DATA_DIR if set, else ./data (PTB downloaded by `make smoke`/`make test`
# when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup test smoke reproduce report bench bf16-curves gpu-check lint lab
setup: $(STAMP)

# Quiet: setuptools' notice about editable installs (a UserWarning box) says nothing here.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (once; about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

test: setup  ## all tests, including the smoke pipeline on real PTB (downloaded when missing)
	$(BIN)/pytest

smoke: setup  ## the main job: smoke preset of `lmtie reproduce` -> results/smoke/report.html
	$(BIN)/lmtie reproduce --preset smoke --jobs 2

reproduce: setup  ## PTB small, four variants, full schedule (hours on a CPU; resumable)
	$(BIN)/lmtie reproduce --preset cpu --jobs 2

report: setup  ## re-render results/report.html from the committed run files
	$(BIN)/lmtie reproduce --preset cpu --report-only

bench: setup  ## throughput of the four variants against a plain PyTorch LSTM LM
	$(BIN)/python benchmarks/throughput.py --corpus ptb --size small

bf16-curves: setup  ## 10-epoch VD-LSTM and +REAL in bf16, beside the fp32 runs (~80 CPU-min)
	$(BIN)/lmtie train --variant vd --epochs 10 --precision bf16 --threads 1 --quiet --resume & \
	$(BIN)/lmtie train --variant real --epochs 10 --precision bf16 --threads 1 --quiet --resume & \
	wait
	$(BIN)/lmtie reproduce --preset cpu --report-only

gpu-check: setup  ## the CUDA path on a GPU (<= 8 min): tests, throughput, --jobs, a campaign
	benchmarks/gpu_check.sh

lab: setup  ## open the notebooks in JupyterLab (installs it into .venv)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	cd notebooks && ../$(BIN)/jupyter lab

lint: setup
	$(BIN)/ruff check .
