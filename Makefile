# The pipeline as a DAG of Make targets:  make data features train submit
# Every target installs the project first (into .venv) if needed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# TensorFlow build: gpu where nvidia-smi works, cpu otherwise. Override with TF=cpu|gpu.
TF ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)

DATASET ?= dogs-vs-cats
SOURCE ?=
# BACKBONE and MODEL take one name or several, separated by spaces.
BACKBONE ?= resnet50 xception
WEIGHTS ?=
WEIGHTS_DIR ?=
POOL ?=
TTA ?= none
PRECISION ?= auto
MODEL ?= $(foreach b,$(BACKBONE),logreg:$(b))
MODELS ?=
METHOD ?= weighted
FILE ?=
ARGS ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

opt = $(if $(2),$(1) $(2))

.PHONY: all install data features train cv submit upload kernel kernel-push test bench-data bench-features clean

all: data features train submit

install: $(VENV)/.installed-$(TF)

$(VENV)/.installed-$(TF): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[$(TF),dev]'
	rm -f $(VENV)/.installed-*
	touch $@

data: install
	$(PY) -m competition data --dataset $(DATASET) $(call opt,--source,$(SOURCE)) $(ARGS)

features: install
	set -e; for backbone in $(BACKBONE); do \
	  $(PY) -m competition features --dataset $(DATASET) --backbone $$backbone $(call opt,--weights,$(WEIGHTS)) $(call opt,--weights-dir,$(WEIGHTS_DIR)) $(call opt,--pool,$(POOL)) --tta $(TTA) --precision $(PRECISION) $(ARGS); \
	done

train: install
	set -e; for model in $(MODEL); do \
	  $(PY) -m competition train --dataset $(DATASET) --model $$model $(call opt,--weights,$(WEIGHTS)) $(call opt,--weights-dir,$(WEIGHTS_DIR)) $(ARGS); \
	done

cv: install
	$(PY) -m competition cv --dataset $(DATASET) $(ARGS)

submit: install
	$(PY) -m competition submit --dataset $(DATASET) --method $(METHOD) $(call opt,--models,$(MODELS)) $(ARGS)

upload: install
	$(PY) -m competition upload --dataset $(DATASET) $(call opt,--file,$(FILE)) $(ARGS)

kernel: install
	$(PY) -m competition kernel --dataset $(DATASET) $(ARGS)

kernel-push: install
	$(PY) -m competition kernel-push --dataset $(DATASET) $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

bench-data: install
	$(PY) benchmarks/bench_data.py $(ARGS)

bench-features: install
	$(PY) benchmarks/bench_features.py $(ARGS)

clean:
	rm -rf data/*/ reports/ kernels/build/ submissions/*/
