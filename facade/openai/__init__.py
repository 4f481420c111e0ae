"""The OpenAI-compatible API (``/v1/…``): chat completions (streamed or whole), the tiers as models, and
image generations, over the same sends, jobs, ledger and workers as the network API."""
