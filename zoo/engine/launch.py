"""Data-parallel adapt across processes: `zoo adapt --processes N` (or `api.adapt(..., processes=N)`).

The parent, having checked the options and read the data, writes what a run needs (the backbone's registry
entry, the request, the configuration, the run directory) to a JSON file and starts N copies of this module with
``torch.distributed.run`` (torchrun). Each copy is one rank: it reads the same data again and calls
:func:`zoo.engine.run.run_training`; accelerate reads the rank from the environment and joins the process group
(gloo on CPUs, NCCL on GPUs); the engine shards every batch across the ranks and averages gradients. Rank 0
writes the run directory; the parent reads its zoo_run.json when all have exited.

Past one machine (`--nodes N --node-rank K --master-addr H --master-port P`), every machine runs the same command
with its own K: each starts its ``--processes`` ranks under torchrun, whose static rendezvous (a TCP store that node
0 hosts at H:P) numbers them into one world. Only global rank 0 writes, so the run directory (on a file system
every node shares) is claimed by node 0's parent alone and the history is written by node 0 alone; the other nodes
read the record rank 0 wrote when their ranks have exited.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo import checks
from zoo.engine.config import AdaptConfig
from zoo.engine.rundir import CLAIMED_ENV
from zoo.errors import InvalidInputError, ZooError
from zoo.plugins import get_plugin_manager
from zoo.registry import BackboneSpec
from zoo.runs.record import has_record, read_record

AGENT = "--agent"    # zoo.engine.launch's first argument when it is to run torchrun
DEFAULT_PORT = 29500   # torchrun's own default, so a firewall rule written for torchrun fits


@dataclass(frozen=True)
class LaunchPlan:
    """Where the ranks of one run are: ``processes`` on each of ``nodes`` machines, this one being ``node_rank``;
    the machines meet at ``master_addr:master_port``, on node 0 (None on one machine: 127.0.0.1, a free port)."""

    processes: int = 1                 # ranks on each machine
    nodes: int = 1                     # machines
    node_rank: int = 0                 # this machine's place, 0 for the one at master_addr
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def world(self) -> int:
        """Ranks in all."""
        return self.processes * self.nodes

    @property
    def writes(self) -> bool:
        """Whether this machine's command claims the run directory and writes the history: node 0's alone, as
        global rank 0 (the one that writes the run directory) is among its ranks."""
        return self.node_rank == 0

    @classmethod
    def checked(cls, *, processes: int = 1, nodes: int = 1, node_rank: int | None = None,
                master_addr: str | None = None, master_port: int | None = None) -> LaunchPlan:
        """The plan the options give, or a one-line error naming the option and what to give instead.

        Raises:
            zoo.errors.InvalidInputError: a count below 1, a --node-rank outside the nodes or without --nodes,
                --master-addr missing for several nodes, a port outside 1-65535.
        """
        processes = checks.whole("--processes", processes, low=1, allow_none=False)
        nodes = checks.whole("--nodes", nodes, low=1, allow_none=False)
        node_rank = checks.whole("--node-rank", node_rank, low=0)
        master_addr = checks.text("--master-addr", master_addr)
        master_port = checks.whole("--master-port", master_port, low=1, high=65535)
        if nodes == 1:
            for option, value in (("--node-rank", node_rank), ("--master-addr", master_addr),
                                  ("--master-port", master_port)):
                if value is not None:
                    raise InvalidInputError(f"{option} applies to a run on several machines: give --nodes too "
                                            "(see docs/adapt.md), or leave it out")
            return cls(processes=processes)
        if node_rank is None:
            others = "1 on the other" if nodes == 2 else f"1 to {nodes - 1} on the others"
            raise InvalidInputError(f"--nodes {nodes}: give each machine its --node-rank (0 on the machine at "
                                    f"--master-addr, {others})")
        if node_rank >= nodes:
            raise InvalidInputError(f"--node-rank {node_rank} is outside --nodes {nodes}: give 0 to {nodes - 1}")
        if master_addr is None:
            raise InvalidInputError(f"--nodes {nodes}: give --master-addr, the address of the --node-rank 0 "
                                    "machine that every machine can reach")
        return cls(processes=processes, nodes=nodes, node_rank=node_rank, master_addr=master_addr.strip(),
                   master_port=master_port or DEFAULT_PORT)

    def options(self) -> list[str]:
        """The `zoo adapt` options of this plan on this machine (none for one process)."""
        options = ["--processes", str(self.processes)] if self.processes > 1 else []
        if self.nodes > 1:
            options += ["--nodes", str(self.nodes), "--node-rank", str(self.node_rank),
                        "--master-addr", str(self.master_addr), "--master-port", str(self.master_port)]
        return options


def recorded_plan(record: dict[str, Any]) -> LaunchPlan:
    """The processes and nodes a run trained in, from its record: its "launch" section; a record without one
    (written before runs kept it) gives its hardware's process count on one machine."""
    section = record.get("launch") or {}
    processes = section.get("processes") or (record.get("hardware") or {}).get("processes") or 1
    return LaunchPlan(processes=int(processes), nodes=int(section.get("nodes") or 1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(plan: LaunchPlan, spec, request, config, run_dir: Path, *, history=None,
           resume: bool = False) -> dict[str, Any]:
    """Run :func:`zoo.engine.run.run_training` of ``spec`` for ``request`` with ``config`` in this machine's
    ``plan.processes`` ranks (of ``plan.world``) and return rank 0's run record; ``resume`` continues the run
    from its checkpoint.

    On node 0 the caller holds the run directory's claim; the ranks are told so (they write into it without
    claiming). When the ranks fail after the run record was written, the record (now "failed") goes to
    ``history``.

    Raises:
        zoo.errors.ZooError: a rank's one-line error, or the launcher's last line.
    """
    call = {"backbone": spec.to_dict(), "request": asdict(request), "config": config.to_dict(),
            "run_dir": str(run_dir), "resume": resume}
    with tempfile.TemporaryDirectory(prefix="zoo-launch-") as tmp:
        call_file = Path(tmp) / "call.json"
        call_file.write_text(json.dumps(call, default=str))
        errors = Path(tmp) / "error.txt"
        command = [sys.executable, "-m", "zoo.engine.launch", AGENT, f"--nproc-per-node={plan.processes}",
                   f"--nnodes={plan.nodes}", f"--node-rank={plan.node_rank}",
                   f"--master-addr={plan.master_addr or '127.0.0.1'}",
                   f"--master-port={plan.master_port or _free_port()}",
                   "-m", "zoo.engine.launch", str(call_file), str(errors)]
        # The machine's cores shared out among its ranks, unless the person chose the threads per rank.
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // plan.processes))
        env = {**os.environ, "OMP_NUM_THREADS": threads, CLAIMED_ENV: str(run_dir)}
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            if history is not None and has_record(run_dir):
                history.record_run(read_record(run_dir).to_dict())
            if errors.is_file():   # a ZooError in rank 0: its one-line message and exit code
                failure = json.loads(errors.read_text())
                error = ZooError(failure["message"])
                error.exit_code = failure["exit_code"]
                raise error
            record = read_record(run_dir) if has_record(run_dir) else None
            if record is not None and record.status == "failed" and record.error:   # rank 0 is on another node
                raise ZooError(record.error.split(": ", 1)[-1])
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            where = f"{plan.world}-process" if plan.nodes == 1 else f"{plan.nodes}-node"
            raise ZooError(f"the {where} run failed: {tail}")
    if not has_record(run_dir):   # a node other than 0 that does not see what rank 0 wrote
        raise InvalidInputError(f"{run_dir}: the run finished on node 0, but its record is not seen here: the "
                                "run directory must be on a file system every node shares (see docs/adapt.md)")
    return read_record(run_dir).to_dict()


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux). torchrun starts each rank in a session of
    its own, so without this a kill -9 of `zoo adapt` would leave its ranks training on in a folder no one claims,
    beside the run a --resume starts there."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:   # the parent died before the request was made: nothing will send the signal
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    """One rank: the run :func:`launch` wrote to ``argv[0]``; a ZooError's message goes to ``argv[1]``. With
    ``AGENT`` first, torchrun itself, with the rest of ``argv``, tied to the life of the `zoo adapt` that
    started it."""
    _die_with_parent()
    if argv[:1] == [AGENT]:
        from torch.distributed.run import main as torchrun

        torchrun(argv[1:])
        return 0
    from zoo.engine.run import AdaptRequest, run_training

    call = json.loads(Path(argv[0]).read_text())
    try:
        spec = BackboneSpec.from_dict(call["backbone"], origin=call["backbone"].get("origin", ""))
        request = AdaptRequest(**call["request"])
        config = AdaptConfig.from_dict(call["config"])
        family = get_plugin_manager().family(spec.family, backbone=spec.name)
        splits = request.read_data(seed=config.seed)
        run_training(spec, family, splits, config, Path(call["run_dir"]), request, resume=call.get("resume", False))
    except ZooError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            Path(argv[1]).write_text(json.dumps({"message": str(exc), "exit_code": exc.exit_code}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
