# mvq_plugin: the README's two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_OUT ?= work_dirs/bench

.PHONY: setup setup-ops test test-fast demo bench bench-kmeans bench-paper-tables bench-accuracy \
	bench-allocate bench-imagenet bench-hw bench-detseg lint readme-results clean

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

# Benchmarks write into $(BENCH_OUT) (a scratch folder); `make bench-X BENCH_OUT=docs/results`
# updates the committed results. Each target is the command its results file records.
bench: bench-kmeans bench-paper-tables bench-accuracy bench-allocate bench-imagenet bench-hw \
	bench-detseg  ## every benchmark into $(BENCH_OUT) (hours on 2 cores; see docs/benchmarks.md)

bench-kmeans: setup  ## masked k-means vs faiss on ResNet-50's sub-vectors, scaling in n and k
	$(PY) tools/bench/kmeans.py --threads 2 --rounds 5 --scaling --out $(BENCH_OUT)/kmeans_bench.json

bench-paper-tables: setup  ## the paper's Tables 1, 3 and 5 in form (ResNet-18, Fashion-MNIST, 3 seeds)
	$(PY) tools/bench/paper_tables.py --threads 2 --dense-iters 4000 --budget 400 --seeds 0 1 2 --out $(BENCH_OUT)

bench-accuracy: setup  ## the MVQ recipe vs vq, prune_vq and a dense control at equal bits and budget
	$(PY) tools/bench/mvq_recipe.py --width 16 --dense-iters 12000 --budget 400 --seeds 0 1 2 --points 0 2 4 --threads 2 --out $(BENCH_OUT)

bench-allocate: setup  ## allocated vs uniform MVQ at equal bits, energy budget, channel pruning
	$(PY) tools/bench/allocate.py --threads 2 --fresh --resnet50 --out $(BENCH_OUT)

bench-imagenet: setup  ## MobileNetV2 and EfficientNet-Lite0 (real ImageNet weights), post-training at 1:2
	$(PY) tools/bench/imagenet_posttrain.py --model mobilenetv2 --steps 0 --kmeans-iters 50 --threads 1 --out-dir $(BENCH_OUT)
	$(PY) tools/bench/imagenet_posttrain.py --model efficientnet-lite0 --steps 0 --kmeans-iters 50 --threads 1 --out-dir $(BENCH_OUT)

bench-hw: setup  ## the paper's hardware tables and figures beside the model's
	$(PY) tools/bench/hw_paper.py --out $(BENCH_OUT)

bench-detseg: setup-ops  ## Mask R-CNN R18-FPN and DeepLab-V3 MobileNetV2 from random init, then dense control / vq / MVQ (resumable; many hours on 2 cores)
	$(PY) tools/bench/detseg.py --seeds 0 1 --budget 400 --out $(BENCH_OUT)

lint: setup
	$(PY) -m ruff check mvq_plugin tools tests examples

readme-results:  ## regenerate the README's results table from docs/results/*.json
	$(PY) tools/readme_results.py

clean:
	rm -rf work_dirs .pytest_cache
