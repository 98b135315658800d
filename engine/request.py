"""A request's lifecycle and timestamps: the one mutable record both bodies share.

waiting -> running (one prefill step, then decode steps) -> finished | aborted | rejected.
A preempted request goes back to waiting; when it is admitted again its prefill recomputes the
prompt plus every token generated so far (``prefill_len``), and ``preemptions`` counts how often
that happened. Terminal states carry a ``reason`` (empty when finished).

Progress is not stored per token: the scheduler keeps one global step counter, and a running
request records the step of its prefill (``prefill_step``) and the tokens it had generated
before that prefill (``base_tokens``). Its context length and token count at any step follow
by arithmetic, so a decode step costs no per-request work. Times are seconds on the caller's
clock (the engine's wall clock or the simulator's ``env.now``).
"""
from __future__ import annotations

import enum

import numpy as np

_NO_PAGES = np.zeros(0, dtype=np.intp)


class RequestState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"
    REJECTED = "rejected"


TERMINAL_STATES = frozenset({RequestState.FINISHED, RequestState.ABORTED,
                             RequestState.REJECTED})


class Request:
    """One request. Fields after ``output_len`` are written by the scheduler only."""

    __slots__ = ("request_id", "arrival_s", "adapter_id", "prompt_len", "output_len",
                 "state", "reason", "admitted_s", "first_token_s", "finish_s",
                 "output_tokens", "preemptions", "replica",
                 "kv_pages", "base_tokens", "prefill_step", "finish_step", "grow_step",
                 "admit_seq", "queue_seq")

    def __init__(self, request_id: int, arrival_s: float, adapter_id: int, prompt_len: int,
                 output_len: int) -> None:
        if prompt_len < 1:
            raise ValueError(f"Request.prompt_len must be >= 1, got {prompt_len} "
                             f"(request {request_id})")
        if output_len < 1:
            raise ValueError(f"Request.output_len must be >= 1, got {output_len} "
                             f"(request {request_id})")
        self.request_id = int(request_id)
        self.arrival_s = float(arrival_s)
        self.adapter_id = int(adapter_id)
        self.prompt_len = int(prompt_len)
        self.output_len = int(output_len)
        self.state = RequestState.WAITING
        self.reason = ""
        self.admitted_s: float | None = None      # first admission
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.output_tokens = 0                    # tokens generated (final once terminal)
        self.preemptions = 0
        self.replica = 0
        # Scheduler bookkeeping.
        self.kv_pages: np.ndarray = _NO_PAGES     # [pages] intp, page table in token order
        self.base_tokens = 0                      # tokens generated before the current prefill
        self.prefill_step = -1                    # global step of the current prefill
        self.finish_step = -1                     # global step producing the last token
        self.grow_step = -1                       # next step needing a KV page (incremental)
        self.admit_seq = -1                       # admission order (preemption picks newest)
        self.queue_seq = -1                       # queue entry id; stale entries are skipped

    @property
    def prefill_len(self) -> int:
        """Tokens the next (or current) prefill processes: prompt plus tokens so far."""
        return self.prompt_len + self.base_tokens

    @property
    def kv_tokens_total(self) -> int:
        """KV entries the request writes over its whole life: the last token is never fed
        back, so prompt + output - 1."""
        return self.prompt_len + self.output_len - 1

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def context_len(self, step: int) -> int:
        """Context length incl. the new token in decode step ``step`` (after the prefill)."""
        return self.prefill_len + (step - self.prefill_step)

    def tokens_after(self, step: int) -> int:
        """Tokens generated once step ``step`` (the prefill or a later decode) completes."""
        return self.base_tokens + 1 + (step - self.prefill_step)

    def __repr__(self) -> str:
        return (f"Request({self.request_id}, adapter={self.adapter_id}, "
                f"prompt={self.prompt_len}, output={self.output_len}, {self.state.value})")
