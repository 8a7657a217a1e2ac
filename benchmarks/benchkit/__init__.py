"""The pieces of ``benchmarks/bench.py``: data set, systems (mounts), workloads, report."""
