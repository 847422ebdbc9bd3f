# The two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
OUT ?= out
WORKERS ?= 2

.PHONY: install demo test lint clean

$(BIN)/grader: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,dev]'
	touch $@

install: $(BIN)/grader

## demo: build the offline asset kit (once), run the reference, grade submissions/ into out/
demo: install
	$(BIN)/grader assets build
	$(BIN)/grader grade submissions --rubric rubrics/transfer_learning.toml --out $(OUT) --quick --workers $(WORKERS)
	@echo "Class page:  $(OUT)/index.html"
	@echo "Spreadsheet: $(OUT)/grades.csv"
	@echo "Reports:     $(OUT)/reports/"

## test: lint, fast tests, then kernel tests (real kernels, real TensorFlow)
test: install lint
	$(BIN)/pytest -q -m "not kernel"
	$(BIN)/pytest -q -m kernel

lint: install
	$(BIN)/ruff check grader tests

clean:
	rm -rf $(OUT) .pytest_cache
