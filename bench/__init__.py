"""threadlink's benchmark harness: `make bench` (or `python -m bench --help`). See bench/run.py."""
