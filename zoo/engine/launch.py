"""Data-parallel adapt across processes: `zoo adapt --processes N` (or `api.adapt(..., processes=N)`).

The parent, having checked the options and read the data, writes what a run needs (the backbone's registry
entry, the request, the configuration, the run directory) to a JSON file and starts N copies of this module with
``torch.distributed.run`` (torchrun). Each copy is one rank: it reads the same data again and calls
:func:`zoo.engine.run.run_training`; accelerate reads the rank from the environment and joins the process group
(gloo on CPUs, NCCL on GPUs); the engine shards every batch across the ranks and averages gradients. Rank 0
writes the run directory; the parent reads its zoo_run.json when all have exited.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo.engine.config import AdaptConfig
from zoo.engine.rundir import CLAIMED_ENV
from zoo.errors import ZooError
from zoo.plugins import get_plugin_manager
from zoo.registry import BackboneSpec
from zoo.runs.record import has_record, read_record


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, spec, request, config, run_dir: Path, *, history=None) -> dict[str, Any]:
    """Run :func:`zoo.engine.run.run_training` of ``spec`` for ``request`` with ``config`` in ``processes`` ranks
    and return rank 0's run record.

    The caller holds the run directory's claim; the ranks are told so (they write into it without claiming).
    When the ranks fail after the run record was written, the record (now "failed") goes to ``history``.
    """
    call = {"backbone": spec.to_dict(), "request": asdict(request), "config": config.to_dict(),
            "run_dir": str(run_dir)}
    with tempfile.TemporaryDirectory(prefix="zoo-launch-") as tmp:
        call_file = Path(tmp) / "call.json"
        call_file.write_text(json.dumps(call, default=str))
        errors = Path(tmp) / "error.txt"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "zoo.engine.launch",
                   str(call_file), str(errors)]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes)),
               CLAIMED_ENV: str(run_dir)}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            if history is not None and has_record(run_dir):
                history.record_run(read_record(run_dir).to_dict())
            if errors.is_file():   # a ZooError in a rank: its one-line message and exit code
                failure = json.loads(errors.read_text())
                error = ZooError(failure["message"])
                error.exit_code = failure["exit_code"]
                raise error
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ZooError(f"the {processes}-process run failed: {tail}")
    return read_record(run_dir).to_dict()


def main(argv: list[str]) -> int:
    """One rank: the run :func:`launch` wrote to ``argv[0]``; a ZooError's message goes to ``argv[1]``."""
    from zoo.engine.run import AdaptRequest, run_training

    call = json.loads(Path(argv[0]).read_text())
    try:
        spec = BackboneSpec.from_dict(call["backbone"], origin=call["backbone"].get("origin", ""))
        request = AdaptRequest(**call["request"])
        config = AdaptConfig.from_dict(call["config"])
        family = get_plugin_manager().family(spec.family, backbone=spec.name)
        splits = request.read_data(seed=config.seed)
        run_training(spec, family, splits, config, Path(call["run_dir"]), request)
    except ZooError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            Path(argv[1]).write_text(json.dumps({"message": str(exc), "exit_code": exc.exit_code}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
