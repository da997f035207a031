# cattlepose developer targets. `make setup` is implied by every target that needs the venv.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
CLI     := .venv/bin/cattlepose
STAMP   := .venv/.setup-stamp
CONFIG  ?= configs/default.yaml
NAME    ?= default
RUN     ?= runs/$(NAME)
SUB     ?= submissions/submission.csv
DATA    ?= data/synth
SET     ?=
export OMP_NUM_THREADS ?= 2
# glibc returns large freed blocks to the OS at once, so every HRNet forward page-faults its activations anew;
# higher thresholds keep them mapped (the CPU forward gets faster, docs/BENCHMARKS.md).
export MALLOC_TRIM_THRESHOLD_ ?= 268435456
export MALLOC_MMAP_THRESHOLD_ ?= 67108864

.PHONY: setup test test-slow lint format train predict bench bench-gpu ablation variants report

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# K-fold training of CONFIG (with the overrides in SET, e.g. SET='-s train.epochs=9') into runs/NAME.
# Re-running continues a stopped run and skips finished folds.
train: $(STAMP)
	$(CLI) train -c $(CONFIG) --name $(NAME) --resume $(SET)

# Fold + flip ensemble on the synthetic test set -> submission, validated and scored. Trains first if needed.
predict: $(STAMP)
	test -f $(RUN)/cv.json || $(MAKE) train
	$(CLI) predict $(RUN) $(DATA)/test/images -o $(SUB) --template $(DATA)/sample_submission.csv
	$(CLI) validate $(SUB) --template $(DATA)/sample_submission.csv --images $(DATA)/test/images
	$(CLI) evaluate $(SUB) $(DATA)/test -c $(CONFIG)

# Side-by-side benchmarks (ratios measured in one run); numbers go to docs/BENCHMARKS.md.
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The GPU fast path on a CUDA card, one table (about 4 minutes); says so and exits 0 where there is no CUDA.
bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_gpu.py

# Inference variants of a trained run on the synthetic test set: single fold vs ensemble, flip, argmax vs DARK.
variants: $(STAMP)
	test -f $(RUN)/cv.json || $(MAKE) train
	$(PY) benchmarks/variants.py $(RUN) --test $(DATA)/test

# The training ablation of docs/BENCHMARKS.md (PSA layouts, augmentation levels; 2 folds each, about 35 min on CPU).
ablation: $(STAMP)
	$(PY) benchmarks/ablation.py --config $(CONFIG)

# Failure-analysis report of a run -> RUN/report/index.html
report: $(STAMP)
	$(CLI) report $(RUN)
