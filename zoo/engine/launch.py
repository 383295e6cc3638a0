"""Data-parallel adapt across processes: `zoo adapt --processes N` (or `api.adapt(..., processes=N)`).

The parent writes the adapt request, the run directory and the configuration to a JSON file and starts N copies
of this module with ``torch.distributed.run`` (torchrun), each calling ``api.adapt`` with them. Each copy is one
rank: accelerate reads the rank from the environment and joins the process group (gloo on CPUs, NCCL on GPUs);
the engine shards every batch across the ranks and averages gradients. Rank 0 writes the run directory; the
parent reads its zoo_run.json when all have exited.
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

from zoo.errors import ZooError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, request, config, run_dir: Path, *, history=None) -> dict[str, Any]:
    """Run the adapt ``request`` (an :class:`zoo.engine.run.AdaptRequest`) with ``config`` into ``run_dir`` in
    ``processes`` ranks, each through ``api.adapt``; return rank 0's run record.

    The caller holds the run directory's claim; the ranks are told so (they write into it without claiming).
    When the ranks fail after the run record was written, the record (now "failed") goes to ``history``.
    """
    from zoo.engine.run import read_record
    from zoo.engine.rundir import CLAIMED_ENV

    with tempfile.TemporaryDirectory(prefix="zoo-launch-") as tmp:
        spec = Path(tmp) / "call.json"
        call = {**asdict(request), "output": str(run_dir), "config": config.to_dict()}
        spec.write_text(json.dumps(call, default=str))
        errors = Path(tmp) / "error.txt"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "zoo.engine.launch",
                   str(spec), str(errors)]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes)),
               CLAIMED_ENV: str(run_dir)}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            if history is not None and (Path(run_dir) / "zoo_run.json").is_file():
                history.record_run(read_record(run_dir))
            if errors.is_file():   # a ZooError in a rank: its one-line message and exit code
                failure = json.loads(errors.read_text())
                error = ZooError(failure["message"])
                error.exit_code = failure["exit_code"]
                raise error
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ZooError(f"the {processes}-process run failed: {tail}")
    return read_record(run_dir)


def main(argv: list[str]) -> int:
    from zoo import api
    from zoo.engine.config import AdaptConfig

    call = json.loads(Path(argv[0]).read_text())
    call["config"] = AdaptConfig.from_dict(call["config"])
    try:
        api.adapt(**call, store=False)
    except ZooError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            Path(argv[1]).write_text(json.dumps({"message": str(exc), "exit_code": exc.exit_code}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
