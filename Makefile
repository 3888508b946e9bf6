# mvq_plugin: the README's two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-ops test test-fast demo bench bench-accuracy bench-allocate bench-imagenet \
	bench-detseg lint clean

# Two set-up stages (docs/install.md). An ops environment stays ops: `make setup` keeps its mmcv.
setup:  ## lite stage: venv at $(VENV), pinned stack with mmcv-lite (no compiled ops), real data
	VENV=$(VENV) MVQ_STAGE=lite bash tools/setup_env.sh

setup-ops:  ## ops stage: the compiled mmcv (built once, ~25 min on 2 cores, cached) for mmdet/mmseg
	VENV=$(VENV) MVQ_STAGE=ops bash tools/setup_env.sh

test: setup-ops  ## the whole suite, slow tests included (pytest exit 5 = no tests is not a failure)
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-fast: setup-ops
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: setup  ## the main job on the embedded default
	$(PY) tools/demo.py --work-dir work_dirs/demo

bench: setup  ## benchmarks that print side-by-side ratios
	$(PY) tools/bench/kmeans.py --threads 2 --rounds 5 --scaling --out docs/results/kmeans_bench.json

bench-accuracy: setup  ## the MVQ recipe vs vq, prune_vq and a dense control at equal bits and budget -> docs/results/mvq_recipe.*
	$(PY) tools/bench/mvq_recipe.py --width 16 --dense-iters 12000 --budget 400 --seeds 0 1 2 --points 0 2 4

bench-allocate: setup  ## allocated vs uniform MVQ at equal bits, energy budget, channel pruning -> docs/results/allocate.*
	$(PY) tools/bench/allocate.py --threads 2 --resnet50

bench-imagenet: setup  ## MobileNetV2 and EfficientNet-Lite0 (real ImageNet weights), post-training: mvq vs vq at equal bits
	$(PY) tools/bench/imagenet_posttrain.py --model mobilenetv2 --steps 0 --kmeans-iters 50
	$(PY) tools/bench/imagenet_posttrain.py --model efficientnet-lite0 --steps 0 --kmeans-iters 50

bench-detseg: setup-ops  ## Mask R-CNN and DeepLabV3, dense then MVQ, on the canvas sets -> docs/results/detseg_sanity*
	$(PY) tools/make_canvas_data.py
	$(PY) tools/bench/detseg_sanity.py

lint: setup
	$(PY) -m ruff check mvq_plugin tools tests examples

clean:
	rm -rf work_dirs .pytest_cache
