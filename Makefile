# ferronet developer commands. `make help` lists them; CI and the README call these targets.
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: install
install: $(PY) ## build the wheel from source and install it into $(VENV)
	$(PY) -m pip install -q ".[test]"

.PHONY: demo
demo: install ## train an MLP on the bundled digits and print the test accuracy
	$(PY) -m ferronet.demo

.PHONY: test
test: install ## Rust unit tests, then the pytest suite against the installed wheel
	cargo test -p ferronet-core
	$(PY) -m pytest tests

.PHONY: lint
lint: $(PY) ## rustfmt, clippy -D warnings, ruff
	$(PY) -m pip install -q ruff
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

.PHONY: format
format: $(PY) ## apply rustfmt and ruff format
	$(PY) -m pip install -q ruff
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches

TORCH_ARG = $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON))

.PHONY: bench
bench: install ## every benchmark: end to end against PyTorch (TORCH_PYTHON=path/to/python), then the kernels
	$(PY) benches/e2e.py --markdown $(TORCH_ARG)
	cargo bench -p ferronet-benches
	$(PY) benches/gemm_torch.py $(TORCH_ARG)
	$(PY) benches/criterion_table.py peak_fp32 conv_t1 conv_t2 optimizer_step_1M_t1 optimizer_step_1M_t2
