#!/usr/bin/env bash
# The whole test suite on a real Apache Kafka broker: set-up, broker up, pytest, broker down
# (only if this script started it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

kafka() { .venv/bin/python deploy/kafka/local_kafka.py "$@"; }
started=""
if ! .venv/bin/python -c 'import sys; sys.path.insert(0, "deploy/kafka"); import local_kafka as k; sys.exit(0 if k.serves_requests(9092) else 1)'; then
  echo "==> starting Apache Kafka (KRaft) on 127.0.0.1:9092"
  kafka up
  started=1
fi
cleanup() {
  [ -n "$started" ] && kafka down || true
  # Stop the 3-node cluster too, in case a fault test left it running.
  kafka down --cluster >/dev/null 2>&1 || true
}
trap cleanup EXIT

# helm for tests/deploy/test_helm.py (the chart's lint and rendered manifests): built from the Go
# module proxy, about 4 minutes the first time on 2 cores, seconds once Go's caches have it.
# Without Go or on a failed build the chart's tests skip, saying why.
HELM_VERSION=v3.21.4
if ! command -v helm >/dev/null && [ ! -x .venv/bin/helm ]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  if [ -x "$go" ]; then
    echo "==> building helm $HELM_VERSION for the Helm chart's checks (go install; cached after the first time)"
    GOBIN="$PWD/.venv/bin" timeout 1200 "$go" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
      || echo "    could not build helm: tests/deploy/test_helm.py will skip"
  fi
fi

echo "==> lint (ruff, mypy)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "==> tests"
.venv/bin/pytest "$@"
