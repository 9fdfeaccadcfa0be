# Entry points. Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SER    := $(VENV)/bin/ser
STAMP  := $(VENV)/.installed
DATA   ?= data/synthetic

.PHONY: venv demo serve-demo test test-fast bench bench-serve clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The main job on the embedded default: the synthetic corpus, its features, a short
# comparison study of the origin's three representations (mel, mfcc, chroma) on a
# speaker-disjoint split (2 speakers each for validation and test), their Optuna-weighted
# ensemble, its ONNX export (fp32 + static int8, checked against PyTorch), a prediction
# without torch, and the HTTP service end to end.
DEMO_OUT ?= runs/demo
DEMO_CLIP = $(DATA)/Actor_08/03-01-05-01-02-01-08.wav
demo: $(STAMP)
	$(SER) data synth --out $(DATA)
	$(SER) data manifest synthetic $(DATA)
	$(SER) features --corpus synthetic --data $(DATA) --features all
	$(SER) compare --corpus synthetic --data $(DATA) --features mel,mfcc,chroma --epochs 8 --val 0.25 --test 0.25 \
		--out $(DEMO_OUT)
	$(SER) ensemble --runs $(DEMO_OUT) --top 3 --trials 50 --out $(DEMO_OUT)/ensemble
	$(SER) export --bundle $(DEMO_OUT)/ensemble/bundle --out $(DEMO_OUT)/model --quantize static \
		--corpus synthetic --data $(DATA)
	$(SER) predict --model $(DEMO_OUT)/model/model.int8.onnx $(DEMO_CLIP)
	$(MAKE) --no-print-directory serve-demo MODEL=$(DEMO_OUT)/model/model.int8.onnx CLIP=$(DEMO_CLIP)

# The service end to end: start it, wait until it answers, POST a clip with curl-free
# `ser client`, show a refused upload, stop it.
PORT  ?= 8765
MODEL ?= $(DEMO_OUT)/model/model.int8.onnx
CLIP  ?= $(DEMO_CLIP)
serve-demo: $(STAMP)
	@$(SER) -q serve --model $(MODEL) --port $(PORT) & pid=$$!; trap "kill $$pid 2>/dev/null" EXIT; \
	for i in $$(seq 120); do $(PY) -c "import httpx; httpx.get('http://127.0.0.1:$(PORT)/health').raise_for_status()" \
		2>/dev/null && break; kill -0 $$pid 2>/dev/null || exit 1; sleep 0.5; done; \
	echo "POST $(CLIP) to http://127.0.0.1:$(PORT)/predict:"; \
	$(SER) client --url http://127.0.0.1:$(PORT) $(CLIP) && \
	echo "POST a text file (refused with a 4xx JSON error):"; \
	! $(SER) client --url http://127.0.0.1:$(PORT) README.md

# The whole test suite and every docstring example in the package (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q --doctest-modules src/ser tests

# Everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q --doctest-modules -m "not slow" src/ser tests

bench: $(STAMP)
	$(PY) bench/features.py --clips 20

# The service under load (needs the model `make demo` exports, or MODEL=...).
bench-serve: $(STAMP)
	$(PY) bench/serve.py --model $(MODEL) --requests 500 --concurrency 8

clean:
	rm -rf $(VENV) data .pytest_cache
