"""``PackedShardIterable``: ``PackedShardDataset`` as a torch ``IterableDataset`` (only when PyTorch is installed:
``pip install 'tokenmill[torch]'``); built on first access of ``schemas.loader.PackedShardIterable``."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from schemas.loader.dataset import PackedShardDataset, check_int


def packed_shard_iterable() -> type:
    """Build PackedShardIterable (imports torch)."""
    try:
        import torch
        import torch.distributed as dist
        from torch.utils.data import IterableDataset, get_worker_info
    except ImportError as e:
        raise ImportError("PackedShardIterable needs PyTorch: pip install 'tokenmill[torch]' "
                          "(PackedShardDataset, the numpy core, does not)") from e

    class PackedShardIterable(IterableDataset):
        """PackedShardDataset as a torch IterableDataset: each DataLoader worker reads its part, batches as tensors."""

        def __init__(self, path: str, batch_size: int, *, rank: int | None = None, world_size: int | None = None,
                     seed: int = 0, **options: Any) -> None:
            """Like PackedShardDataset; rank and world_size default to torch.distributed's (else 0 and 1)."""
            if "worker" in options:
                raise ValueError("PackedShardIterable sets worker itself (one part per DataLoader worker)")
            if rank is None or world_size is None:
                ready = dist.is_available() and dist.is_initialized()
                rank = (dist.get_rank() if ready else 0) if rank is None else rank
                world_size = (dist.get_world_size() if ready else 1) if world_size is None else world_size
            check_int("batch_size", batch_size, 1)
            self.path, self.batch_size, self.rank, self.world_size, self.seed = path, batch_size, rank, world_size, seed
            self.options = options
            self.epoch: int | None = None
            self._state: dict[str, Any] | None = None
            self._core: PackedShardDataset | None = None
            PackedShardDataset(path, rank=rank, world_size=world_size, seed=seed, **options).close()  # checks

        def set_epoch(self, epoch: int) -> None:
            """The epoch the next iteration reads (call it before each epoch)."""
            check_int("epoch", epoch, 0)
            self.epoch = epoch

        def _make_core(self) -> PackedShardDataset:
            info = get_worker_info()
            worker = (info.id, info.num_workers) if info is not None else (0, 1)
            return PackedShardDataset(self.path, rank=self.rank, world_size=self.world_size, worker=worker,
                                      seed=self.seed, **self.options)

        def __iter__(self) -> Iterator[dict[str, Any]]:
            core = self._make_core()
            if self._state is not None:
                core.load_state_dict(self._state)
                self._state = None
            if self.epoch is not None:
                core.set_epoch(self.epoch)
            self._core = core
            for batch in core.batches(self.batch_size):
                yield {k: (torch.from_numpy(v if v.flags.writeable else v.copy()) if isinstance(v, np.ndarray)
                           else v) for k, v in batch.items()}

        def state_dict(self) -> dict[str, Any]:
            """This worker's (or, without workers, this process's) position."""
            if self._core is None:
                core = self._make_core()
                if self._state is not None:
                    core.load_state_dict(self._state)
                elif self.epoch is not None:
                    core.set_epoch(self.epoch)
                return core.state_dict()
            return self._core.state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            """Continue from ``state`` at the next iteration (in the worker that saved it)."""
            self._state = state
            self._core = None

        def __getstate__(self) -> dict[str, Any]:
            d = dict(self.__dict__)
            d["_core"] = None
            return d

    PackedShardIterable.__qualname__ = "PackedShardIterable"  # picklable as schemas.loader.PackedShardIterable
    PackedShardIterable.__module__ = __package__  # the package builds it on first access (its __getattr__)
    return PackedShardIterable
