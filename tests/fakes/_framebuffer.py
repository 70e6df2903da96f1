"""Ring buffer of camera frames shared by the camera fakes.

It follows pylablib's frame-counter semantics (``pylablib.devices.interface.camera``):
frames are numbered from 0 since the acquisition start, the buffer keeps the
newest ``buffer_size`` frames, frames overwritten before being read are
"skipped" (lost), and ``read_multiple_images`` with ``missing_frame="skip"``
returns only the frames still in the buffer, so lost frames show up as a gap in
the frame indices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pylablib.devices.interface.camera import TFrameInfo, TFramesStatus


class FrameRing:
    """Frames acquired by a fake camera.

    Parameters
    ----------
    make_frame : callable
        ``make_frame(index) -> ndarray`` giving the 2-D frame number ``index``.
    """

    def __init__(self, make_frame: Callable[[int], np.ndarray]) -> None:
        self.make_frame = make_frame
        self.buffer_size: int | None = None  # None: acquisition not set up
        self.n_frames: int | None = None  # None: continuous
        self.running = False
        self.acquired = 0
        self.last_read = -1
        self.skipped = 0

    def setup(self, buffer_size: int, n_frames: int | None) -> None:
        self.buffer_size = int(buffer_size)
        self.n_frames = n_frames

    def clear(self) -> None:
        self.running = False
        self.buffer_size = None

    def start(self) -> None:
        self.running = True
        self.acquired = 0
        self.last_read = -1
        self.skipped = 0

    def stop(self) -> None:
        self.running = False

    def produce(self, n: int) -> int:
        """Let the camera acquire up to ``n`` more frames; return how many it did."""
        if not self.running:
            return 0
        if self.n_frames is not None:
            n = min(n, self.n_frames - self.acquired)
        self.acquired += max(n, 0)
        if self.n_frames is not None and self.acquired >= self.n_frames:
            self.running = False  # a finite series stops by itself
        return max(n, 0)

    def unread(self) -> int:
        if self.buffer_size is None:
            return 0
        oldest = max(0, self.acquired - self.buffer_size)
        return self.acquired - max(self.last_read + 1, oldest)

    def status(self) -> TFramesStatus:
        if self.buffer_size is None:
            return TFramesStatus(0, 0, 0, 0)
        unread = self.unread()
        full_unread = self.acquired - 1 - self.last_read
        return TFramesStatus(
            self.acquired, unread, self.skipped + (full_unread - unread), self.buffer_size
        )

    def read(self, return_info: bool, peek: bool = False):
        """Read all unread frames still in the buffer (pylablib 'skip' semantics)."""
        if self.buffer_size is None:
            return (None, None) if return_info else None
        first_wanted = self.last_read + 1
        oldest = max(0, self.acquired - self.buffer_size)
        first = max(first_wanted, oldest)
        indices = range(first, self.acquired)
        frames = [self.make_frame(i) for i in indices]
        if not peek:
            self.skipped += first - first_wanted
            self.last_read = max(self.last_read, self.acquired - 1)
        if return_info:
            return frames, [TFrameInfo(i) for i in indices]
        return frames
