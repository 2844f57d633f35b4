"""`make bench`: RSS of a real `threadlink connectors run` process before and after 100
unauthenticated 10 MiB requests and 200 stalled ones (target: back within 20 MB)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.webhook_load import main

if __name__ == "__main__":
    sys.exit(main())
