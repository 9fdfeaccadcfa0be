# Entry points. Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SER    := $(VENV)/bin/ser
STAMP  := $(VENV)/.installed
DATA   ?= data/synthetic

.PHONY: venv demo test test-fast bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The main job on the embedded default: the synthetic corpus, its features, a short
# comparison study of the origin's three representations (mel, mfcc, chroma) and their
# Optuna-weighted ensemble.
DEMO_OUT ?= runs/demo
demo: $(STAMP)
	$(SER) data synth --out $(DATA)
	$(SER) data manifest synthetic $(DATA)
	$(SER) features --corpus synthetic --data $(DATA) --features all
	$(SER) compare --corpus synthetic --data $(DATA) --features mel,mfcc,chroma --epochs 8 --out $(DEMO_OUT)
	$(SER) ensemble --runs $(DEMO_OUT) --top 3 --trials 50 --out $(DEMO_OUT)/ensemble

# The whole test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

# Everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/features.py --clips 20

clean:
	rm -rf $(VENV) data .pytest_cache
