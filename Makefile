# mvq_plugin: the README's two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo bench bench-accuracy bench-allocate bench-imagenet lint clean

setup:  ## create or reuse the venv at $(VENV), build/cached mmcv, real data
	VENV=$(VENV) bash tools/setup_env.sh

test: setup  ## the whole suite, slow tests included (pytest exit 5 = no tests is not a failure)
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: setup  ## the main job on the embedded default
	$(PY) tools/demo.py --work-dir work_dirs/demo

bench: setup  ## benchmarks that print side-by-side ratios
	$(PY) tools/bench/kmeans.py --threads 2 --rounds 5 --scaling --out docs/results/kmeans_bench.json

bench-accuracy: setup  ## the MVQ recipe vs vq, prune_vq and a dense control at equal bits and budget -> docs/results/mvq_recipe.*
	$(PY) tools/bench/mvq_recipe.py --width 16 --dense-iters 12000 --budget 400 --seeds 0 1 2 --points 0 2 4

bench-allocate: setup  ## allocated vs uniform MVQ at equal bits, energy budget, channel pruning -> docs/results/allocate.*
	$(PY) tools/bench/allocate.py --threads 2 --resnet50

bench-imagenet: setup  ## MobileNetV2 (real ImageNet weights): mvq vs vq at a matched ratio
	$(PY) tools/bench/imagenet_mobilenetv2.py

lint: setup
	$(PY) -m ruff check mvq_plugin tools tests examples

clean:
	rm -rf work_dirs .pytest_cache
