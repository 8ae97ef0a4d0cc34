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

.PHONY: bench
bench: install ## end-to-end benchmark against PyTorch (TORCH_PYTHON=path/to/python), then GEMM kernels
	$(PY) benches/e2e.py $(if $(TORCH_PYTHON),--torch-python $(TORCH_PYTHON))
	cargo bench -p ferronet-benches --bench gemm
