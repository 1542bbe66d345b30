"""Byte streams under the capture readers: a file or pipe, and gzip decompression.

A stream's ``read(n)`` gives up to ``n`` bytes (fewer from a pipe: what it has
now), ``b""`` at the end, and raises ``Cut`` when the (compressed) stream itself
ends early or is corrupt, once the bytes before the damage are out: all of
them, as far as zlib can decode (a bad CRC or length in a gzip trailer loses
nothing; damage inside the deflate data loses what follows it).

A pipe (a live capture) can be silent for a while: a ``RawSource`` given an
``on_quiet`` callback calls it, while it waits for the next bytes, every
``QUIET_POLL`` seconds of silence with the silence so far (a check per read,
never per packet).
"""

import select
import zlib

CHUNK = 1 << 20                 # bytes asked of the stream per read
QUIET_POLL = 0.25               # seconds between two on_quiet calls while a pipe is silent


class Cut(Exception):
    """The (compressed) stream itself ends early or is corrupt."""


class RawSource:
    """A binary file object read with big reads; counts the bytes taken from it."""

    def __init__(self, fobj, pipe):
        self.fobj = fobj
        self.count = 0
        self.pipe = pipe
        self.on_quiet = None             # on_quiet(seconds): a pipe silent that long (see above)
        # read1 returns what a pipe has now instead of waiting for a full chunk (and,
        # asked for more than its buffer holds, keeps nothing buffered: select tells the truth)
        self._read = getattr(fobj, "read1", None) if pipe else None
        if self._read is None:
            self._read = fobj.read
        if pipe:
            _widen(fobj)

    def _wait(self):
        """Until the pipe has bytes (or its end), call on_quiet as the silence goes on."""
        try:
            fd = self.fobj.fileno()
        except (AttributeError, OSError, ValueError):
            return
        silent = 0.0
        while not select.select((fd,), (), (), QUIET_POLL)[0]:
            silent += QUIET_POLL
            self.on_quiet(silent)

    def read(self, n):
        if self.on_quiet is not None:
            self._wait()
        b = self._read(n)
        if b is None:                    # non-blocking file object with nothing ready
            b = b""
        self.count += len(b)
        return b


def _widen(fobj):
    """Ask for a pipe buffer of a chunk (Linux): a writer that is ahead is read a chunk
    at a time, not 64 KiB (fewer reads; nothing changes for a writer that is not)."""
    try:
        import fcntl
        fcntl.fcntl(fobj.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except (ImportError, AttributeError, OSError, ValueError):
        pass                      # not a pipe, not Linux, or above the system's limit


class GzipSource:
    """Decompress a gzip stream (several members allowed) with bounded output per read."""

    def __init__(self, src, head):
        self.src = src
        self.tail = head                 # compressed bytes already taken from src
        self.d = None                    # decompressor of the current member
        self.first = True
        self.done = False
        self.cut = None                  # Cut to raise once the data before it is out
        self.step = None                 # after an error: feed this many bytes at a time

    @property
    def count(self):
        return self.src.count

    def read(self, n):
        while True:
            if self.cut is not None:
                raise self.cut
            if self.done:
                return b""
            if self.tail:
                inp, self.tail = self.tail, b""
            else:
                self.step = None
                inp = self.src.read(CHUNK)
                if not inp:
                    if self.d is not None:
                        self.cut = Cut("compressed (gzip) stream ends early")
                        continue
                    self.done = True
                    return b""
            if self.d is None:           # at the start of a member
                if not self.first:
                    inp = bytes(inp).lstrip(b"\0")   # zero padding between/after members
                    if not inp:
                        continue
                    if inp[0] != 0x1F:
                        self.done = True         # trailing garbage: ignored, as gzip -d
                        return b""
                self.first = False
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            whole, rest = inp, b""
            if self.step is not None and len(inp) > self.step:
                whole = memoryview(inp)
                inp, rest = whole[:self.step], whole[self.step:]
            before = self.d.copy()
            try:
                out = self.d.decompress(inp, n)
            except zlib.error as e:
                if len(inp) > 1:
                    # zlib gives nothing of a call that fails: go back to before
                    # it and feed the same bytes in smaller pieces, to hand out
                    # everything before the damage
                    self.d = before
                    self.step = max(1, len(inp) // 16)
                    self.tail = whole
                    continue
                self.cut = Cut(_damage(e))
                continue
            if self.d.eof:
                left = self.d.unused_data
                self.d = None
            else:
                left = self.d.unconsumed_tail
            self.tail = bytes(left) + bytes(rest) if len(left) and len(rest) else (left if len(left) else rest)
            if out:
                return out


def _damage(exc):
    """What a zlib error says, in words."""
    what = str(exc)
    for check, field in (("incorrect data check", "CRC-32"), ("incorrect length check", "length")):
        if check in what:
            return (f"corrupt compressed (gzip) data: the {field} in its trailer does not match "
                    "what it decompressed to (all of it was read; some bytes may be wrong)")
    return f"corrupt compressed (gzip) data ({what})"


def read_at_least(stream, buf, n):
    """buf plus reads of the stream until it holds n bytes or the stream ends.
    A ``Cut`` is raised only when no byte came: the bytes read before it are
    returned first (the stream raises it again on the next read)."""
    have = start = len(buf)
    if have >= n:
        return buf
    parts = [buf] if buf else []
    while have < n:
        try:
            b = stream.read(max(CHUNK, n - have))
        except Cut:
            if have > start:             # hand out what came first
                break
            raise
        if not b:
            break
        parts.append(b)
        have += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)
