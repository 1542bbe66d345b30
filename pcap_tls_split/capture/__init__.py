"""Capture files -> frames: the only step that touches files.

``open_capture(path)`` gives a ``Capture`` whose ``frames()`` and ``batches()``
walk its packets (``reader.py``); the formats are declared in ``formats.py``,
walked by ``pcap.py`` and ``pcapng.py`` over the byte streams of ``streams.py``
(a file, a pipe, gzip).
"""

from .reader import Capture, CaptureError, Frame, open_capture

__all__ = ["Capture", "CaptureError", "Frame", "open_capture"]
