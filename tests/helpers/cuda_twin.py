"""A CPU twin of the CUDA calls the torch backend's host transfer makes (``attnx.engine.backends.torch_backend``).

:class:`CudaTwin` stands in for :class:`CudaCalls`: streams and events that belong to a device, copies that stay
pending on their stream until an event after them (or the device) is synchronised, and a pinned-memory allocator
that, like PyTorch's caching host allocator, hands a block out again as soon as nothing refers to it any more.
So a consumer that reads before synchronising, or keeps maps whose memory is handed to a later batch, sees wrong
values, as it would on a GPU; and every call is logged with its device, so the tests can check order and placement.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import numpy as np
import torch

from attnx.engine.backends.torch_backend import CudaCalls


def _inference_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.inference_mode():  # the backend made ``dst`` in inference mode; the copy may run outside it
        dst.copy_(src)


class TwinStream:
    def __init__(self, twin: CudaTwin, device: torch.device, name: str) -> None:
        self.twin, self.device, self.name = twin, device, name
        self.ops: list[Callable[[], None]] = []  # issued in order
        self.done = 0  # ops[:done] have run

    def wait_event(self, event: TwinEvent) -> None:
        self.twin.log.append(("wait", self.device, self.name, event.id))
        event.synchronize_silently()  # later ops of this stream run after everything before the event

    def run_until(self, n: int) -> None:
        while self.done < n:
            self.ops[self.done]()
            self.done += 1

    def __repr__(self) -> str:
        return f"TwinStream({self.name} on {self.device})"


class TwinEvent:
    count = 0

    def __init__(self, twin: CudaTwin) -> None:
        TwinEvent.count += 1
        self.twin, self.id = twin, TwinEvent.count
        self.stream: TwinStream | None = None
        self.mark = 0

    def record(self, stream: TwinStream | None = None) -> None:
        stream = stream or self.twin.current_stream(self.twin.current_device)  # torch's default
        self.stream, self.mark = stream, len(stream.ops)
        self.twin.log.append(("record", stream.device, stream.name, self.id))

    def synchronize_silently(self) -> None:
        if self.stream is not None:
            self.stream.run_until(self.mark)

    def synchronize(self) -> None:
        if self.stream is None:
            raise AssertionError("event synchronised before it was recorded")
        self.twin.log.append(("synchronize", self.stream.device, self.stream.name, self.id))
        self.synchronize_silently()


class CudaTwin(CudaCalls):
    """The CUDA calls, on the CPU; ``log`` holds ``(call, device, stream name, event id)`` in call order."""

    def __init__(self, current_device: torch.device | None = None) -> None:
        self.current_device = current_device or torch.device("cuda", 0)  # where a call that names no device runs
        self.log: list[tuple] = []
        self.streams: list[TwinStream] = []
        self._default: dict[torch.device, TwinStream] = {}
        self._active: TwinStream | None = None
        self._free: list[np.ndarray] = []  # pinned blocks nobody refers to any more
        self.blocks = 0  # pinned blocks made (a reused block is not counted again)

    def stream(self, device: torch.device | None = None) -> TwinStream:
        s = TwinStream(self, device or self.current_device, f"copy{len(self.streams)}")
        self.streams.append(s)
        self.log.append(("stream", s.device, s.name, None))
        return s

    def current_stream(self, device: torch.device | None = None) -> TwinStream:
        device = device or self.current_device
        if self._active is not None and self._active.device == device:
            return self._active
        if device not in self._default:
            self._default[device] = TwinStream(self, device, "default")
            self.streams.append(self._default[device])
        return self._default[device]

    def event(self) -> TwinEvent:
        return TwinEvent(self)

    @contextlib.contextmanager
    def use(self, stream: TwinStream) -> Iterator[None]:
        previous = self._active, self.current_device
        self._active, self.current_device = stream, stream.device
        try:
            yield
        finally:
            self._active, self.current_device = previous

    def pinned(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        nbytes = n * torch.empty(0, dtype=dtype).element_size()
        block = next((b for b in self._free if len(b) >= nbytes), None)
        if block is None:
            block, self.blocks = np.empty(max(nbytes, 1 << 12), np.uint8), self.blocks + 1
        else:
            self._free.remove(block)
        block.fill(0xFF)  # float NaN / a wrong integer until the copy lands
        view = block[:nbytes]
        weakref.finalize(view, self._free.append, block)  # back in the pool once no tensor or array refers to it
        return torch.from_numpy(view).view(dtype)

    def copy_async(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        stream = self.current_stream(self.current_device)
        self.log.append(("copy", stream.device, stream.name, None))
        src = src.clone()  # the device buffer's contents at issue time; the host sees them only once run
        stream.ops.append(lambda: _inference_copy(dst, src))

    def keep_alive(self, tensor: torch.Tensor, stream: TwinStream) -> None:
        self.log.append(("keep_alive", stream.device, stream.name, None))

    def synchronize(self, device: torch.device | None = None) -> None:
        device = device or self.current_device
        self.log.append(("synchronize_device", device, None, None))
        for s in self.streams:
            if s.device == device:
                s.run_until(len(s.ops))
