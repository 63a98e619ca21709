# aqa-pipeline — every target sets up its own environment first, so `make test` / `make demo` work from a
# fresh clone. Torch/torchvision are pinned in constraints.txt (CPU-capable builds); pyproject stays unpinned.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REPRODUCE_DATASETS := mtl-aqa finediving aqa-7 rhythmic-gymnastics fis-v
STAMP := $(VENV)/.installed
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL ?= 0
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test test-fast wheel-smoke demo lint format bench fisv-store fisv-baselines fisv-heads fisv-tuned clean \
	reproduce-all $(addprefix reproduce-,$(REPRODUCE_DATASETS))

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: setup  ## the whole suite; real-data tests need AQA_WEIGHTS_DIR / AQA_DATA_DIR (they skip with a reason otherwise)
	YOLO_CONFIG_DIR=$$(mktemp -d) $(PY) -m pytest -q -rs

test-fast: setup  ## without the tests marked slow
	YOLO_CONFIG_DIR=$$(mktemp -d) $(PY) -m pytest -q -m "not slow"

wheel-smoke:  ## build the wheel, pip-install it into a clean venv, run the README's first commands from outside the repo
	PYTHON=$(PYTHON) .ci/wheel-smoke

demo: setup  ## synthetic videos/features with known scores through every stage, metrics and plots at the end
	$(PY) -m aqa_pipeline.demo --out demo-output

lint: setup
	$(VENV)/bin/ruff check aqa_pipeline tests benchmarks
	$(VENV)/bin/ruff format --check aqa_pipeline tests benchmarks

format: setup
	$(VENV)/bin/ruff format aqa_pipeline tests benchmarks
	$(VENV)/bin/ruff check --fix aqa_pipeline tests benchmarks

bench: setup  ## measured numbers, not tests (see benchmarks/)
	$(PY) benchmarks/bench_store.py
	@for script in benchmarks/bench_*.py; do [ "$$script" = benchmarks/bench_store.py ] || $(PY) $$script; done

# -- reproductions (need AQA_DATA_DIR) -----------------------------------------------------------------------
FISV_STORE ?= runs/fisv/features.h5

fisv-store: setup  ## import the released Fis-V Video Swin features (400 training videos)
	$(VENV)/bin/aqa-import --dataset fis-v --features-dir $(AQA_DATA_DIR)/fisv/swintx_avg_fps25_clip32 \
	  --out $(FISV_STORE) --split train

# 5-fold CV on the 400 Fis-V training videos, TES and PCS, 3 seeds, for each head in $(1)
fisv_cv = for head in $(1); do for target in tes pcs; do \
	  $(VENV)/bin/aqa-fit --head $$head $(FISV_STORE) --target $$target --cv 5 --seeds 3 --quiet \
	    --no-final-model --out runs/fisv/$$head-$$target || exit 1; done; done

fisv-baselines: fisv-store  ## Fis-V CV table of the baselines (about an hour on 2 CPU cores)
	@$(call fisv_cv,svr ridge mlp lstm bilstm usdl)

fisv-heads: fisv-store  ## Fis-V CV table of the paper heads (several hours on 2 CPU cores)
	@$(call fisv_cv,tpt core action-net gdlt weight-score)

# The options aqa-fit --tune found (configs/fis-v/<head>-<target>.yaml, searched on the folds of the seeds in its
# header) against each head's defaults, evaluated on folds the search never saw (seeds 100-102), alone and as a
# seed ensemble; and the heads whose defaults have no committed search (FISV_DEFAULT_HEADS), alone and as a seed
# ensemble.
FISV_DEFAULT_HEADS ?= gdlt weight-score
FISV_TUNED ?= runs/fisv-tuned
FISV_TUNED_CV = --cv 5 --seeds 3 --seed 100 --quiet --no-final-model $(if $(THREADS),--threads $(THREADS))
fisv_once = test -f $(2)/metrics.json || $(VENV)/bin/aqa-fit $(FISV_STORE) $(1) $(FISV_TUNED_CV) --overwrite --out $(2)

fisv-tuned: fisv-store  ## Fis-V table: defaults / tuned / tuned + 3-seed ensemble per committed config, and ridge
	@for target in tes pcs; do $(call fisv_once,--head ridge --target $$target,$(FISV_TUNED)/ridge-$$target) || exit 1; done
	@for config in configs/fis-v/*.yaml; do name=$$(basename $$config .yaml); \
	  head=$${name%-*}; target=$${name##*-}; \
	  $(call fisv_once,--head $$head --target $$target,$(FISV_TUNED)/$$name-defaults) || exit 1; \
	  $(call fisv_once,--config $$config,$(FISV_TUNED)/$$name-tuned) || exit 1; \
	  $(call fisv_once,--config $$config --ensemble 3,$(FISV_TUNED)/$$name-tuned-ensemble) || exit 1; \
	done
	@for head in $(FISV_DEFAULT_HEADS); do for target in tes pcs; do \
	  $(call fisv_once,--head $$head --target $$target,$(FISV_TUNED)/$$head-$$target-defaults) || exit 1; \
	  $(call fisv_once,--head $$head --target $$target --ensemble 3,$(FISV_TUNED)/$$head-$$target-defaults-ensemble) \
	    || exit 1; \
	done; done
	$(VENV)/bin/aqa-compare $(FISV_TUNED)/* --format markdown --out $(FISV_TUNED)

# -- the seed papers' tables from your copy of a dataset (README: "Reproducing the papers' tables") ------------
# make reproduce-mtl-aqa DATA=/datasets/mtl-aqa/videos          (or FEATURES=DIR for fis-v / rhythmic-gymnastics)
# Smaller runs: SEEDS=1 HEADS=gdlt,ridge SET="epochs=2 batch_size=8"; DEVICE=cuda:0; THREADS=N for each aqa-fit;
# ENCODER= / PRESET= replace the papers' (the table says so); JOBS=N fits in parallel (aqa-fit --jobs).
# TSA's tubes and FSPN's actor clips track the athlete from INIT_BOX=x1,y1,x2,y2|boxes.json, else the person the
# detector (DETECTOR=yolo.pt, default yolo11n) finds.
# Interrupted, the same command resumes.
SEEDS ?= 3
DEVICE ?= cpu
REPRODUCE_OUT ?= reproduce
reproduce = $(PY) -m aqa_pipeline.cli.reproduce $(1) --out $(REPRODUCE_OUT) --seeds $(SEEDS) --device $(DEVICE) \
	$(if $(HEADS),--heads $(HEADS)) $(foreach item,$(SET),--set $(item)) $(if $(ENCODER),--encoder $(ENCODER)) \
	$(if $(PRESET),--preset $(PRESET)) $(if $(THREADS),--threads $(THREADS)) $(if $(JOBS),--jobs $(JOBS)) \
	$(if $(INIT_BOX),--init-box $(INIT_BOX)) $(if $(DETECTOR),--detector-weights $(DETECTOR))

$(addprefix reproduce-,$(REPRODUCE_DATASETS)): reproduce-%: setup  ## writes $(REPRODUCE_OUT)/<dataset>/TABLE.md
	@test -n "$(DATA)$(FEATURES)" || { echo "reproduce-$*: give DATA=/path/to/its/videos (or FEATURES=DIR)" >&2; exit 2; }
	$(call reproduce,$*) $(if $(FEATURES),--features $(FEATURES),--data $(DATA))

reproduce-all: setup  ## every table; DATA holds one video folder per dataset (DATA/mtl-aqa, DATA/fis-v, ...)
	@test -n "$(DATA)" || { echo "reproduce-all: give DATA=/path holding one video folder per dataset" >&2; exit 2; }
	@for dataset in $(REPRODUCE_DATASETS); do $(call reproduce,$$dataset) --data $(DATA)/$$dataset || exit 1; done

clean:
	rm -rf $(VENV) demo-output runs reproduce .pytest_cache .ruff_cache *.egg-info
