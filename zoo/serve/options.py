"""The server's knobs, checked by `zoo.api` before anything loads, and how a worker process receives them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.serve.model import Target

# How many inputs one request may hold, in batches: more would hold the queue for everyone else.
MAX_INPUTS_IN_BATCHES = 4
# The environment variable a worker process reads its options from (uvicorn starts workers by import string).
OPTIONS_ENV = "ZOO_SERVE_OPTIONS"


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 32          # items in one model call at most
    max_wait_ms: float = 5.0     # how long the first waiting item waits for batch-mates
    top_k: int = 5               # labels per answer, unless the request says otherwise
    max_body_mb: float = 32.0    # a larger request body is refused with 413

    @property
    def max_inputs(self) -> int:
        return self.max_batch * MAX_INPUTS_IN_BATCHES

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


def encode_for_workers(target: Target, options: ServeOptions) -> str:
    """What a worker process needs to build the same app, as the value of :data:`OPTIONS_ENV`."""
    return json.dumps({"target": {"directory": str(target.directory), "backend": target.backend,
                                  "name": target.name}, "options": asdict(options)})


def decode_for_workers(value: str) -> tuple[Target, ServeOptions]:
    spec: dict[str, Any] = json.loads(value)
    target = Target(Path(spec["target"]["directory"]), spec["target"]["backend"], spec["target"]["name"])
    return target, ServeOptions(**spec["options"])
