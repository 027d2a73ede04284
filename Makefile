# The two commands of the README: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck unit unit-fast bench label-sheets clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/storegw demo $(DEMO_ARGS)

test: setup lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m gateway.wire.schema_doc --check

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest $(PYTEST_ARGS)

# Day-to-day: the suite without the tests marked slow (crashes, daemon lifecycles, faults);
# `make test` runs everything.
unit-fast:
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/idle_ble.py
	$(BIN)/python bench/uplink.py
	$(BIN)/python bench/drain.py
	$(BIN)/python bench/hq_sink.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/labels.py
	$(BIN)/python bench/prices.py
	$(BIN)/python bench/push_fleet.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/modbus.py
	$(BIN)/python bench/stock.py
	$(BIN)/python bench/presence.py
	$(BIN)/python bench/presence_accuracy.py
	$(BIN)/python bench/oepl.py
	$(BIN)/python bench/oepl_flip.py

# Every label template on every panel, in several locales (docs/labels/, committed).
label-sheets: setup
	$(BIN)/python -m gateway.labels.contact_sheet docs/labels

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
