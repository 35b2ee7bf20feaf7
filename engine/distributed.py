"""Data parallelism for the training stages: one process per device under `torchrun`.

    torchrun --standalone --nproc_per_node 2 -m engine grpo --config grpo.json

Every process ("rank") holds the whole model (DDP-style), or with `sharding: fsdp` a
1/size shard of every parameter (FSDP2, `prepare_model`). A step's global batch is cut into contiguous shards, one per
rank; each rank computes its shard's share of the *global* loss (normalised by global
counts, which an all-reduce provides), gradients are summed across ranks, and every rank
takes the same optimizer step, so the weights stay identical and the run matches one
process on the same global batch. Rank 0 alone talks to the sink and writes checkpoints.

Everything here is a no-op with one process, so the stages call it unconditionally.
Backend: gloo on CPUs, nccl on CUDA.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from engine.events import ForwardingSink, NullSink, Sink

T = TypeVar("T")
C = TypeVar("C")
# Rank 0 alone may work for a while (a distillation's teacher phase) while the others wait.
TIMEOUT = timedelta(hours=2)
# Set in every process torchrun starts (LOCAL_RANK), and in every one `accelerate launch`
# starts, even a single process it runs without torchrun (ACCELERATE_MIXED_PRECISION).
LAUNCH_ENVS = ("LOCAL_RANK", "ACCELERATE_MIXED_PRECISION")


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that reports and saves."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """True inside a process started by torchrun or `accelerate launch`."""
    return any(name in os.environ for name in LAUNCH_ENVS)


def init(device: str = "cpu") -> World:
    """Join the process group torchrun described in RANK / WORLD_SIZE / LOCAL_RANK (and
    MASTER_ADDR / MASTER_PORT); a single process gets World(). Idempotent."""
    if dist.is_available() and dist.is_initialized():
        return current()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"nproc_per_node is more than the {torch.cuda.device_count()} CUDA devices here: "
                             "run one process per GPU.")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return current()


def current() -> World:
    """The world this process belongs to (World() outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_config(config: C, world: World) -> C:
    """`config` with device `cuda` turned into this rank's GPU (`cuda:<local_rank>`)."""
    if world.parallel and getattr(config, "device", None) == "cuda":
        return dataclasses.replace(config, device=f"cuda:{world.local_rank}")  # type: ignore[type-var]
    return config


def launch_command(launcher: str, nproc_per_node: int, args: list[str]) -> list[str]:
    """The command line that runs `args` (e.g. ["-m", "engine", "sft", ...]) in
    `nproc_per_node` processes on this machine, through torchrun or `accelerate launch`
    (which starts the processes through torchrun's machinery itself, so the ranks see the
    same RANK / WORLD_SIZE / LOCAL_RANK)."""
    if launcher == "accelerate":
        # Mixed precision and dynamo stay off: the stage's own dtype setting decides.
        parallel = ["--multi_gpu"] if nproc_per_node > 1 else []  # its flag for any multi-process run
        return [sys.executable, "-m", "accelerate.commands.launch", *parallel, "--num_machines", "1",
                "--num_processes", str(nproc_per_node), "--mixed_precision", "no", "--dynamo_backend", "no",
                *args]
    if launcher != "torchrun":
        raise ValueError(f"launcher must be torchrun or accelerate to start processes, got {launcher!r}.")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            *args]


# ----------------------------------------------------------------------------
# Sharding and collectives (pure functions of their inputs and the world)
# ----------------------------------------------------------------------------


def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous shard of n items; the first n % size
    ranks get one more. Concatenating the shards in rank order gives 0..n-1.

    >>> [shard_range(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(items: list[T], world: World) -> list[T]:
    """This rank's contiguous share of `items` (all of them with one process)."""
    start, stop = shard_range(len(items), world.rank, world.size)
    return items[start:stop]


def all_gather_objects(obj: T, world: World) -> list[T]:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
    if not world.parallel:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def gather_lists(items: list[T], world: World) -> list[T]:
    """Every rank's list, concatenated in rank order: the global list from the shards."""
    return [x for part in all_gather_objects(items, world) for x in part]


def all_sum(values: dict[str, float], world: World) -> dict[str, float]:
    """Per-key sums over ranks of float dicts with the same keys (in any order)."""
    if not world.parallel or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def broadcast_object(obj: T, world: World) -> T:
    """Rank 0's `obj` on every rank."""
    if not world.parallel:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_parameters(model: torch.nn.Module, world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank (they start identical)."""
    if not world.parallel:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def sum_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Replace each `.grad` by its sum over ranks, in one all-reduce.

    Each rank's loss is its shard's share of the global loss, so the sum is the global
    gradient. A parameter without a gradient on every rank keeps `grad=None` (AdamW then
    skips it, as it would in one process).
    """
    params = [p for p in params if not isinstance(p, DTensor)]  # FSDP reduce-scatters those itself
    if not world.parallel or not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=_comm_device())
    dist.all_reduce(present)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (total parameters,)
    dist.all_reduce(flat)
    offset = 0
    for p, seen in zip(params, present.tolist(), strict=True):
        size = p.numel()
        p.grad = flat[offset : offset + size].view_as(p).clone() if seen else None
        offset += size


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------
# Rank-0 side effects
# ----------------------------------------------------------------------------


class RankZeroSink(ForwardingSink):
    """Passes events to `inner` on rank 0 and drops them elsewhere; `should_stop` is
    rank 0's answer on every rank (a collective: every rank calls it at the same steps),
    so all ranks stop at the same step boundary."""

    def __init__(self, inner: Sink, world: World) -> None:
        super().__init__(inner if world.is_main else NullSink())
        self.world = world

    def should_stop(self) -> bool:
        return bool(broadcast_object(self.inner.should_stop() if self.world.is_main else False, self.world))


def rank_zero_sink(sink: Sink, world: World) -> Sink:
    """`sink` itself with one process, else a RankZeroSink around it (which logs, once,
    how many processes share the work)."""
    if not world.parallel:
        return sink
    wrapped = RankZeroSink(sink, world)
    wrapped.log(f"Data parallel: {world.size} processes on {dist.get_backend()}.")
    return wrapped


def on_rank_zero(fn: Callable[[], T], world: World) -> T:
    """`fn()` run by rank 0 alone; every rank gets its result, or raises its exception."""
    outcome: Any = None
    if world.is_main:
        try:
            outcome = fn()
        except Exception as exc:  # the others must hear of it, not wait for ever
            if not world.parallel:
                raise
            outcome = exc
    outcome = broadcast_object(outcome, world)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def barrier(world: World) -> None:
    """Wait until every rank gets here (e.g. rank 0 finished writing a checkpoint)."""
    if world.parallel:
        dist.barrier()


# ----------------------------------------------------------------------------
# FSDP (`sharding: fsdp`): each rank keeps 1/size of every parameter, gradient and
# optimizer state; FSDP2 all-gathers a layer's weights for its forward and backward and
# reduce-scatters its gradients.
# ----------------------------------------------------------------------------


def prepare_model(model: torch.nn.Module, world: World, sharding: str = "none") -> torch.nn.Module:
    """Make every rank start from rank 0's weights, then shard them if `sharding` is fsdp
    (each decoder layer, then the rest at the root). In place; returns `model`."""
    sync_parameters(model, world)
    if not world.parallel or sharding != "fsdp":
        return model
    from torch.distributed.fsdp import fully_shard

    for layer in _decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    # Each rank's loss is its share of the global loss: sum the gradients, don't average
    # (with a plain SUM: gloo has no pre-multiplied sum).
    for module in model.modules():
        if is_sharded(module):
            module.set_gradient_divide_factor(1.0)  # type: ignore[operator]
            module.set_force_sum_reduction_for_comms(True)  # type: ignore[operator]
    return model


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules transformers says must not be split (its decoder layers)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def is_sharded(model: torch.nn.Module | None) -> bool:
    """True for a model `prepare_model` sharded with FSDP."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def lockstep(items: Sequence[T], model: torch.nn.Module, world: World) -> list[T | None]:
    """`items` padded with None up to the longest rank's count when `model` is sharded:
    every forward of a sharded model is a collective, so all ranks must run as many (a
    None stands for a dummy pass whose loss is multiplied by 0)."""
    if not is_sharded(model):
        return list(items)
    longest = max(all_gather_objects(len(items), world))
    return [*items, *[None] * (longest - len(items))]


def scalar(value: torch.Tensor) -> float:
    """A (possibly DTensor, as clip_grad_norm_ returns under FSDP) 0-dim tensor as a float."""
    full = getattr(value, "full_tensor", None)
    return float(full() if full is not None else value)


@contextmanager
def full_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Within the block the sharded `model` holds its whole weights on every rank, so its
    forwards need no collectives (ranks may sample different numbers of tokens). Costs the
    full model's memory on every rank for the duration. No-op for an unsharded model."""
    if not is_sharded(model):
        yield
        return
    fsdp_modules = [m for m in model.modules() if is_sharded(m)]
    model.set_reshard_after_forward(False)  # type: ignore[operator]
    for module in fsdp_modules:
        module.unshard()  # type: ignore[operator]
    try:
        yield
    finally:
        for module in fsdp_modules:
            module.reshard()  # type: ignore[operator]
        model.set_reshard_after_forward(True)  # type: ignore[operator]


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, *, everywhere: bool = False
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
    """(weights, optimizer state) of a sharded model, gathered whole: on rank 0 in CPU memory
    (or on every rank, on the model's device, with `everywhere`); elsewhere (None, None);
    None for an unsharded model (save it as it is).
    The optimizer state has `optimizer.state_dict()`'s unsharded layout (parameters by
    index), so a checkpoint resumes with either sharding. A collective: every rank calls it."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere, broadcast_from_rank0=False)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else None
    if not weights:  # ranks other than 0 with cpu_offload
        return None, None
    return weights, (_by_index(optim) if optim else None)


def _by_index(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter name turned into the by-index layout."""
    index: dict[str, int] = {}
    groups = []
    for group in state["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**group, "params": ids})
    return {"state": {index[name]: s for name, s in state["state"].items()}, "param_groups": groups}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a by-index optimizer state (as checkpoints hold it) into `optimizer`, which
    may be over a sharded model's parameters."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name: dict[str, Any]  # the literal alone infers a type too narrow for set_optimizer_state_dict
    by_name = {"state": {order[int(i)]: s for i, s in state["state"].items()},
               "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
