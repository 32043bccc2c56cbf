"""FIFO queue of past keys (MoCo memory bank), the only enqueue code in the package."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["KeyQueue"]


class KeyQueue(nn.Module):
    """Fixed-size FIFO of key embeddings with persistent buffers (saved in checkpoints).

    The queue starts *empty* rather than filled with random unit vectors (as MoCo does):
    only the keys enqueued so far are negatives (:meth:`valid_keys`). On small data a queue
    larger than the number of keys seen (or than the dataset) therefore never contributes
    random vectors, whose logits would be near 0 and make the task artificially easy; it
    just grows until it wraps around.

    Buffers: ``keys`` ``(size, dim)``, ``ids`` ``(size,)`` (the video index of each key, -1
    when unknown: lets the loss ignore stale keys of the query's own video, which a queue
    larger than the dataset is bound to hold), ``ptr`` (next write position) and ``filled``
    (number of valid rows, at most ``size``), all persistent.

    Args:
        size: number of keys ``K`` kept.
        dim: embedding dimension.

    Raises:
        ValueError: ``size`` or ``dim`` < 1.
    """

    keys: Tensor
    ids: Tensor
    ptr: Tensor
    filled: Tensor

    def __init__(self, size: int = 16384, dim: int = 128) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        if dim < 1:
            raise ValueError(f"queue dim must be >= 1, got {dim}")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("keys", torch.zeros(self.size, self.dim))
        self.register_buffer("ids", torch.full((self.size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor, ids: Tensor | None = None) -> None:
        """Append keys, overwriting the oldest ones when full (wrap-around).

        A batch larger than the queue keeps its last ``size`` keys.

        Args:
            keys: ``(N, dim)``; detached and cast to the queue's dtype.
            ids: ``(N,)`` video indices of the keys (None = unknown, stored as -1).

        Raises:
            ValueError: wrong shape.
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}), got {tuple(keys.shape)}")
        if ids is not None and ids.shape != keys.shape[:1]:
            raise ValueError(f"ids must have shape ({keys.shape[0]},), got {tuple(ids.shape)}")
        n = keys.shape[0]
        if n == 0:
            return
        keys = keys.detach().to(self.keys.dtype)
        kept = min(n, self.size)
        start = self.ptr + (n - kept)
        index = (start + torch.arange(kept, device=self.keys.device)) % self.size
        self.keys[index] = keys[n - kept :]
        self.ids[index] = -1 if ids is None else ids[n - kept :].to(self.ids)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def valid_keys(self) -> Tensor:
        """The enqueued keys ``(min(seen, size), dim)`` (all rows once full)."""
        filled = int(self.filled)
        # Until the first wrap-around rows [0, filled) are exactly the written ones.
        return self.keys if filled == self.size else self.keys[:filled]

    def valid_ids(self) -> Tensor:
        """Video indices ``(min(seen, size),)`` aligned with :meth:`valid_keys` (-1 = unknown)."""
        filled = int(self.filled)
        return self.ids if filled == self.size else self.ids[:filled]

    def forward(self) -> Tensor:
        """Same as :meth:`valid_keys`."""
        return self.valid_keys()

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
