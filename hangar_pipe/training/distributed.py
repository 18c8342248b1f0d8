"""Distributed data parallel on PyTorch's own engine: torch.distributed, launched by torchrun.

The params section's `distributed:` mapping (train.distributed):

    distributed: {nproc_per_node: 2, nnodes: 1, backend: auto}
    # several machines: nnodes: 2, rdzv_endpoint: "node0.example:29400" (and optionally rdzv_id)

`settings()` checks it (a bad value or unknown key is one line naming the key). A stage that
finds it set and is not a torchrun worker yet calls `launch()`, which runs the same callable
under `torch.distributed.run` (torchrun) in this process: `--standalone` on one node, c10d
rendezvous at `rdzv_endpoint` on several, `-m hangar_pipe.core.call TARGET KWARGS` for each
worker. The workers call `init()` (the process group; on CUDA each takes the GPU of its
local rank), `wrap()` the model in DDP, and only `is_writer()` writes outputs: local rank 0,
which on one node is rank 0, and on several nodes is one process per node, each writing the
same bytes into its own copy of the project. A rank that fails fails the launch: its own error
is on stderr, then one line saying which rank failed, and the launch's exit code is that
rank's (2 for bad input), so hpipe records nothing.

Threads: on the CPU each worker uses the stage's threads (HPIPE_THREADS: core.threads; else the
cores) // nproc_per_node (at least one), set in OMP_NUM_THREADS before the workers start and in
torch, and recorded in `World`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hangar_pipe.training.shapes import Where

if TYPE_CHECKING:
    import torch

BACKENDS = ("auto", "gloo", "nccl")
KEYS = ("nproc_per_node", "nnodes", "backend", "rdzv_endpoint", "rdzv_id")


@dataclass(frozen=True)
class Settings:
    """The `distributed:` mapping, checked."""

    nproc_per_node: int = 1
    nnodes: int = 1
    backend: str = "auto"  # nccl on CUDA, gloo on the CPU
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous; needed when nnodes > 1
    rdzv_id: str | None = None  # the same on every node (default: from the stage's run key)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def settings(value: Any, where: Where) -> Settings | None:
    """The checked settings from a params value (None or absent: one process)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.error((), f"is {value!r}; expected a mapping such as {{nproc_per_node: 2}}")
    if unknown := sorted(set(value) - set(KEYS)):
        raise where.error((unknown[0],), f"is not a distributed setting (known: {', '.join(KEYS)})")
    for key in ("nproc_per_node", "nnodes"):
        n = value.get(key, 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise where.error((key,), f"is {n!r}; expected a whole number >= 1")
    if value.get("backend", "auto") not in BACKENDS:
        raise where.error(("backend",), f"is {value['backend']!r}; expected {', '.join(BACKENDS)}")
    for key in ("rdzv_endpoint", "rdzv_id"):
        if key in value and (not isinstance(value[key], str) or not value[key].strip()):
            raise where.error((key,), f"is {value[key]!r}; expected a string")
    found = Settings(**value)
    if found.nnodes > 1 and not found.rdzv_endpoint:
        raise where.error(("rdzv_endpoint",), f"is missing: {found.nnodes} nodes meet at a"
                          " rendezvous endpoint, such as \"node0.example:29400\"")
    if found.rdzv_endpoint and not _endpoint_ok(found.rdzv_endpoint):
        raise where.error(("rdzv_endpoint",), f"is {found.rdzv_endpoint!r}; expected host:port")
    return found


def _endpoint_ok(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def backend_for(found: Settings, device: str, where: Where) -> str:
    """The backend to use on `device` ("cpu", "cuda"): `auto` is nccl on CUDA, gloo on the CPU.
    nccl without CUDA, or more processes per node than GPUs, is an error naming the key."""
    import torch

    backend = found.backend
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise where.error(("backend",), "is nccl, which needs CUDA, and CUDA is not available"
                          " (use gloo, or auto)")
    if device.startswith("cuda") and found.nproc_per_node > torch.cuda.device_count():
        raise where.error(("nproc_per_node",), f"is {found.nproc_per_node} but this machine has"
                          f" {torch.cuda.device_count()} GPU(s): one process per GPU")
    return backend


def in_worker() -> bool:
    """Whether this process is a torchrun worker (it has a rank)."""
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def is_writer() -> bool:
    """Whether this process writes outputs: local rank 0 (every process outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def threads_per_worker(nproc_per_node: int) -> int:
    """CPU threads for each of a node's workers: the stage's threads (HPIPE_THREADS, else the
    cores) shared out, at least one."""
    from hangar_pipe.training.threads import budget

    return max(1, budget() // nproc_per_node)


CALL_MODULE = "hangar_pipe.core.call"  # what each worker runs (core/stage_ops.py launches it too)


def torchrun_args(found: Settings, target: str, kwargs: dict[str, Any]) -> list[str]:
    """torchrun's command line for running `target(**kwargs)` in every worker."""
    if found.nnodes == 1 and not found.rdzv_endpoint:
        meet = ["--standalone"]
    else:
        meet = ["--nnodes", str(found.nnodes), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", str(found.rdzv_endpoint), "--rdzv_id", rendezvous_id(found)]
    state = os.environ.get("HPIPE_STATE_DIR")  # torchrun's own files (error files) stay in the project
    logs = ["--log_dir", os.path.join(state, "torchrun")] if state else []
    return [*meet, "--nproc_per_node", str(found.nproc_per_node), *logs, "-m", CALL_MODULE, target,
            json.dumps(kwargs)]


def rendezvous_id(found: Settings) -> str:
    """`rdzv_id`, else one every node derives alike: the stage and its run key (the last part of
    its resume folder), so that nodes meet only when their projects agree."""
    if found.rdzv_id:
        return found.rdzv_id
    state = os.environ.get("HPIPE_STATE_DIR")
    key = os.path.basename(state.rstrip("/"))[:16] if state else "run"
    return f"hpipe-{os.environ.get('HPIPE_STAGE', 'stage')}-{key}"


def launch(found: Settings, target: str, kwargs: dict[str, Any]) -> int:
    """Run `target(**kwargs)` in nproc_per_node torchrun workers on this node (this process is
    their agent) and wait; 0, or the exit code of the first rank that failed."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_worker(found.nproc_per_node)))
    noisy = logging.getLogger("torch.distributed.elastic")
    level, noisy.level = noisy.level, logging.CRITICAL  # its log of each worker's end, in full
    try:
        run(parse_args(torchrun_args(found, target, kwargs)))
    except ChildFailedError as exc:
        rank, failure = first_failure(exc.failures)
        code = int(failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode)
        how = f"exit code {failure.exitcode}" if failure.exitcode > 0 else f"signal {-failure.exitcode}"
        said = failure.message if isinstance(failure.message, str) and failure.message.strip() else ""
        print(f"hpipe: error: rank {rank} of {found.world_size} failed first ({how})"
              + (f": {said}" if said else "; its error is above"), file=sys.stderr, flush=True)
        return code
    except SignalException as exc:  # hpipe stopping the stage (Ctrl-C): torchrun stopped the workers
        return 128 + int(exc.sigval)
    except RendezvousError as exc:
        print(f"hpipe: error: rendezvous at {found.rdzv_endpoint} failed: {type(exc).__name__}:"
              f" {exc}".splitlines()[0], file=sys.stderr, flush=True)
        return 1
    finally:
        noisy.level = level
    return 0


def first_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that failed first, and its failure: by the time to the nanosecond its worker
    left in its error file (core/call.py), else torchrun's own (whole seconds) timestamps."""
    def when(rank: int) -> tuple[int, int]:
        data = failures[rank].error_file_data
        ns = data.get("failed_ns") if isinstance(data, dict) else None
        return (0, ns) if isinstance(ns, int) else (1, failures[rank].timestamp)

    rank = min(failures, key=when)
    return rank, failures[rank]


@dataclass(frozen=True)
class World:
    """This worker's place: ranks, sizes, backend, device and CPU threads (recorded as data)."""

    rank: int
    local_rank: int
    size: int
    local_size: int
    backend: str
    device: str
    threads: int

    @property
    def is_writer(self) -> bool:
        return self.local_rank == 0

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def init(backend: str) -> World:
    """Join the process group (the environment torchrun set); on CUDA take the local rank's GPU;
    on the CPU use this node's share of the cores."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    threads = int(os.environ.get("OMP_NUM_THREADS") or threads_per_worker(local_size))
    if device == "cpu":
        torch.set_num_threads(threads)
    dist.init_process_group(backend)
    return World(dist.get_rank(), local_rank, dist.get_world_size(), local_size, backend, device,
                 torch.get_num_threads())


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model in DistributedDataParallel, on this worker's device."""
    from torch.nn.parallel import DistributedDataParallel

    if world.device.startswith("cuda"):
        return DistributedDataParallel(model, device_ids=[world.local_rank])
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's model inside a DDP wrapper (its state_dict keys without `module.`)."""
    import torch

    inner = getattr(model, "module", model)
    return inner if isinstance(inner, torch.nn.Module) else model


def world() -> World | None:
    """This worker's place, once `init` ran; None outside torch.distributed."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = str(dist.get_backend())
    return World(dist.get_rank(), local_rank, dist.get_world_size(),
                 int(os.environ.get("LOCAL_WORLD_SIZE", "1")), backend,
                 f"cuda:{local_rank}" if backend == "nccl" else "cpu", torch.get_num_threads())


def sum_over_ranks(value: float) -> float:
    """The sum of a number over all ranks (the value itself outside torch.distributed)."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return value
    on = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(total)
    return float(total.item())


def cleanup(together: bool = False) -> None:
    """Leave the process group (when there is one). `together`: on a normal end, which every rank
    reaches, meet at a barrier first, so that no rank tears its connections down while another
    still uses them (gloo has aborted a rank at exit there: "terminate called without an active
    exception"). Not after a failure: the other ranks may never get there."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def start(value: Any, where: Where, device: str, target: str, call: dict[str, Any]) -> World | int | None:
    """A stage callable's first step: None without `distributed:` settings (one process); when
    this process is not a worker yet, the exit code of the torchrun launch of `target(**call)`
    (the stage returns it); inside a worker, its `World` (the process group joined; the
    stdout of ranks other than 0 discarded)."""
    found = settings(value, where)
    if found is None:
        return None
    backend = backend_for(found, device, where)  # checked before any worker starts
    if not in_worker():
        return launch(found, target, call)
    world = init(backend)
    if world.rank != 0:  # one copy of the stage's output lines (errors still come from every rank)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this worker's life
    return world
