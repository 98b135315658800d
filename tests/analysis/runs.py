"""Hand-made run folders for the analysis tests, written exactly as docs/internals.md says."""
from __future__ import annotations

import json
from pathlib import Path

from manylora.analysis.run_folder import REQUEST_COLUMNS, STEP_COLUMNS

REQUEST_HEADER = ",".join(REQUEST_COLUMNS + ("preemptions", "replica"))

# The tiny run of test_metrics.py. Per finished request (hand-computed):
#   id  latency  ttft  tpot  norm_latency  queue
#   0   2.0      1.0   0.5   2/3           0.0
#   1   2.0      2.0   0.0   2.0           0.5
#   2   4.5      0.5   1.0   0.9           0.0
# 3 is aborted after streaming a first token, 4 rejected at arrival.
TINY_REQUESTS = """\
0,0.0,0,4,3,finished,,0.0,1.0,2.0,3,0,0
1,1.0,1,2,1,finished,,1.5,3.0,3.0,1,0,1
2,2.0,0,3,5,finished,,2.0,2.5,6.5,5,1,0
3,3.0,1,5,2,aborted,deadline,3.0,3.5,,1,0,1
4,4.0,-1,1,1,rejected,pool_full,,,,0,0,0
"""

# replica,step,start_s,duration_s,prefill_tokens,prefill_requests,prefill_sq_tokens,
# decode_requests,decode_context_tokens,distinct_adapters,sum_ranks,lora_token_ranks,kv_pages,
# adapter_pages,free_pages,adapter_loads,adapter_load_bytes,preempted,aborted (100 pages)
TINY_STEPS = """\
0,0,0.0,1.0,4,1,16,0,0,1,8,32,7,64,29,1,4096,0,0
0,1,1.0,1.0,0,0,0,1,5,1,8,8,8,64,28,0,0,0,0
1,0,1.5,1.5,2,1,4,0,0,1,16,32,3,64,33,1,8192,0,0
0,2,2.0,0.5,3,1,9,0,0,1,8,24,11,64,25,0,0,0,0
0,3,2.5,4.0,0,0,0,1,4,1,8,8,9,64,27,0,0,1,0
"""


def write_run(folder: Path, requests_rows: str = TINY_REQUESTS, steps_rows: str = TINY_STEPS,
              meta: dict | None = None, requests_header: str = REQUEST_HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requests.csv").write_text(requests_header + "\n" + requests_rows)
    (folder / "steps.csv").write_text(",".join(STEP_COLUMNS) + "\n" + steps_rows)
    (folder / "meta.json").write_text(json.dumps(meta or {"source": "engine", "seed": 0}))
    return folder
