"""Helpers of ``benchmarks/engine_scaling.py``: presets, the shared workload, one measured cell
per (variant, number of adapters), the PEFT and merged-weights baselines, and the report.

Not part of the installed package: the benchmark script puts this folder's parent on
``sys.path`` (running ``python benchmarks/engine_scaling.py`` does that by itself).
"""
