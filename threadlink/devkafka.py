"""Access to deploy/kafka/local_kafka.py (a stdlib-only script, so it runs before any venv)."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "local_kafka.py"


@cache
def local_kafka() -> ModuleType:
    spec = importlib.util.spec_from_file_location("threadlink_local_kafka", SCRIPT)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{SCRIPT} is missing: threadlink's local Kafka runner ships with the source checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
