"""`zoo serve`: a finished run or an export folder behind an HTTP server (FastAPI on uvicorn) with dynamic
batching, the Open Inference Protocol v2 subset, Prometheus metrics and 4xx answers for bad input.

``model`` loads what a target names; ``options`` holds the knobs; ``batcher`` groups concurrent requests into
model calls; ``app`` is the ASGI app; ``metrics`` its Prometheus collectors; ``server`` runs it under uvicorn;
``kserve`` writes the manifests that deploy it on KServe.
"""
