"""Load generator and benchmark scenarios for proximity_server (see bench/README.md)."""
