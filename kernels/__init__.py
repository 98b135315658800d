"""manylora.kernels: multi-LoRA and paged-attention kernels over the unified page pool.

Imports only torch and triton. Each kernel file holds the ``@triton.jit`` kernel, a wrapper
that checks its arguments and launches it, and a plain-torch ``*_ref`` (what runs on CPU):

- ``batch_meta``: ``BatchMeta``, the per-step metadata every kernel call of a step reads;
- ``lora_shrink_decode`` / ``lora_expand_decode``: LoRA per token (BGMV/MBGMV-like);
- ``lora_shrink_prefill`` / ``lora_expand_prefill``: LoRA per segment (SGMV/MBGMM-like);
- ``paged_decode_attention``, ``prefill_attention``, ``kv_store``: attention over the pool;
- ``lora_padded``: the padded gather + bmm baseline (plain torch);
- ``lora_ops``, ``attention_ops``: the same ops at step level, taking a ``BatchMeta``;
- ``backends``: those implementations by name (``triton``, ``torch``, ``padded``).
"""
