"""manylora.traces: workloads for the engine and the simulator.

A trace is a folder (requests.csv, adapters.csv, meta.json; docs/internals.md); in memory it is
a columnar `Trace`. Build one with `generate_trace(TraceConfig(...))` or
`import_azure(AzureImportConfig(...))`, store it with `write_trace`, load it with `read_trace`
(which validates and raises `TraceError` naming file, row, column and value).
"""
from manylora.traces.arrivals import (ARRIVALS, ArrivalProcess, BurstArrivals, GammaArrivals,
                                      PoissonArrivals, ScheduleArrivals)
from manylora.traces.catalog import (HF_MODULE_NAMES, TARGETS, CatalogConfig, CycleRanks,
                                     DrawnRanks, FixedAlpha, MixedRanks, PerRankAlpha,
                                     canonical_target, parse_targets)
from manylora.traces.describe import describe
from manylora.traces.errors import TraceConfigError, TraceError
from manylora.traces.generate import TraceConfig, generate_trace
from manylora.traces.import_azure import AzureImportConfig, import_azure
from manylora.traces.lengths import (LENGTHS, LengthModel, LognormalLengths, ResampledLengths,
                                     UniformLengths)
from manylora.traces.popularity import (POPULARITY, Popularity, SLoRAPopularity,
                                        UniformPopularity, ZipfPopularity)
from manylora.traces.trace import Trace
from manylora.traces.trace_io import read_trace, write_trace

__all__ = [
    "ARRIVALS", "ArrivalProcess", "BurstArrivals", "GammaArrivals", "PoissonArrivals",
    "ScheduleArrivals", "HF_MODULE_NAMES", "TARGETS", "CatalogConfig", "CycleRanks",
    "DrawnRanks", "FixedAlpha", "MixedRanks", "PerRankAlpha", "canonical_target",
    "parse_targets", "describe",
    "TraceConfigError", "TraceError", "TraceConfig", "generate_trace", "AzureImportConfig",
    "import_azure", "LENGTHS", "LengthModel", "LognormalLengths", "ResampledLengths",
    "UniformLengths", "POPULARITY", "Popularity", "SLoRAPopularity", "UniformPopularity",
    "ZipfPopularity", "Trace", "read_trace", "write_trace",
]
