# One target per habit. `make run` and `make test` are the README's two commands.
.PHONY: setup run test lint format kafka-up kafka-down schemas bench clean

setup:
	scripts/setup.sh

run: setup
	.venv/bin/threadlink run

test:
	scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

kafka-up: setup
	.venv/bin/threadlink dev kafka up

kafka-down:
	python3 deploy/kafka/local_kafka.py down

schemas: setup
	.venv/bin/threadlink schemas export

# About 11 minutes (at most 14); writes bench/results.md, bench/results.json and bench/latency.png.
# make bench SIZES=10000,100000,1000000 LABEL=before
# make bench BENCH_ARGS="--only sinks,latency"
bench: setup
	.venv/bin/python -m bench $(if $(SIZES),--sizes $(SIZES)) $(if $(LABEL),--label $(LABEL)) $(BENCH_ARGS)

clean:
	python3 deploy/kafka/local_kafka.py wipe || true
	rm -rf .run
