"""The bug report in one file: the packets of the flagged connections as one small pcapng.

``extract`` picks connections as ``select.choose`` does (a stream, a finding code,
or a finding at or above a severity), reads each capture that holds one again
(``detail.collect``) and keeps every frame of those connections, in capture
order, file after file. The pcapng it writes has:

- a section header whose comment names the captures and streams it came from;
- one interface per link type;
- a Decryption Secrets Block (TLS key log) with the key log lines of those
  connections, the lines whose client random is the random of one of their
  ClientHellos, when a key log is given: Wireshark decrypts from the file alone;
- the frames, each finding's message as a packet comment (``opt_comment``;
  Wireshark's ``frame.comment``, listed in its Expert Info) on the frame it
  points at, and a shorter one on the other frames its evidence names.

Frames are spooled to a temporary file while the captures are read (the key
log lines and the comments are known only at the end), so memory stays small.
Timestamps are kept to the microsecond. In the new file Wireshark numbers the
connections from 0 again: ``Extracted.connections`` says which is which (our
own reading of the new file, matched by endpoints and start).
"""

import functools
import os
import struct
import tempfile
from typing import NamedTuple

from .._version import __version__
from ..api import analyze
from ..capture.formats import BT_DSB, BT_EPB, BT_IDB, BT_SHB, DSB_TLS_KEY_LOG, OPT_COMMENT, OPT_END
from ..findings import Severity
from ..report import render as render_module
from .select import choose, details as drawn_details

SHB_USERAPPL = 4         # shb_userappl: the application that wrote the section
SNAPLEN = 262144

# evidence keys that name another frame of a finding, and what that frame is
EVIDENCE_FRAMES = (("first_pending", "frame", "the first pending record"),
                   ("last_received", "frame", "the last record received before the close"),
                   (None, "rst_frame", "the RST"), (None, "fin_frame", "the FIN"),
                   (None, "first_lost_frame", "the first data lost"),
                   (None, "peer_rst_frame", "the peer's RST"),
                   (None, "record_last_frame", "the last segment of the record"))


class ExtractedConnection(NamedTuple):
    """One connection written to the extract."""

    file: str
    """The capture it came from."""
    stream: int
    """Its ``tcp.stream`` there."""
    new_stream: int
    """Its ``tcp.stream`` in the extract (None: not found again, which would be a bug)."""
    packets: int
    """Frames written."""
    findings: tuple
    """Its finding codes, each once, in frame order."""
    key_lines: int
    """Key log lines embedded for it."""


class Extracted(NamedTuple):
    """What ``extract`` wrote."""

    path: str
    connections: tuple
    """``ExtractedConnection``s, in the order of the extract."""
    packets: int
    key_lines: int
    errors: tuple
    """One line per problem (inputs that could not be read, connections without keys)."""
    unreadable: int
    """Inputs that could not be read at all."""


class KeyLogError(Exception):
    """The key log cannot be read (the message names it)."""


def _block(block_type, body):
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _option(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _options(options):
    if not options:
        return b""
    return b"".join(_option(code, value) for code, value in options) + struct.pack("<HH", OPT_END, 0)


def section_header(comment):
    """A pcapng section header block (little-endian, version 1.0, length unknown)."""
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    body += _options([(OPT_COMMENT, comment.encode("utf-8")),
                      (SHB_USERAPPL, f"pcap-tls-split {__version__}".encode())])
    return _block(BT_SHB, body)


def interface(linktype):
    """An interface description block (microsecond timestamps, the default)."""
    return _block(BT_IDB, struct.pack("<HHI", linktype, 0, SNAPLEN))


def decryption_secrets(lines):
    """A Decryption Secrets Block holding TLS key log lines."""
    data = "".join(line.rstrip("\r\n") + "\n" for line in lines).encode("ascii", "replace")
    return _block(BT_DSB, struct.pack("<II", DSB_TLS_KEY_LOG, len(data)) + data)


def packet(interface_id, time, data, orig_len, comments=()):
    """An enhanced packet block, with its comments."""
    ticks = round(time * 1_000_000)
    body = struct.pack("<IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig_len)
    body += bytes(data) + b"\0" * (-len(data) % 4)
    body += _options([(OPT_COMMENT, c.encode("utf-8")) for c in comments])
    return _block(BT_EPB, body)


def key_log_lines(path, randoms):
    """The lines of a key log (SSLKEYLOGFILE format) whose client random is one of
    ``randoms`` (bytes): {random: [line...]}."""
    wanted = {r.hex(): r for r in randoms if r}
    found = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 3 and not fields[0].startswith("#"):
                    random = wanted.get(fields[1].lower())
                    if random is not None:
                        found.setdefault(random, []).append(line.strip())
    except OSError as exc:
        raise KeyLogError(f"{path}: cannot read the key log: {exc.strerror or exc}") from None
    return found


def _comments(file, report):
    """{frame: [comment...]} of one connection's findings."""
    out = {}
    for f in report.findings:
        out.setdefault(f.frame, []).append(
            f"pcap-tls-split {f.code} ({f.severity}, {f.side}, confidence {f.confidence}): {f.message} "
            f"[in {file}: tcp.stream {report.stream}, frame {f.frame}]")
        for outer, key, what in EVIDENCE_FRAMES:
            holder = f.evidence.get(outer) if outer else f.evidence
            frame = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(frame, int) and frame and frame != f.frame:
                out.setdefault(frame, []).append(
                    f"pcap-tls-split: {what}, for {f.code} at frame {f.frame} of {file}")
    return out


class _Spool:
    """The frames kept, in a temporary file until the extract is written."""

    RECORD = struct.Struct("<IIdI")      # file index, frame number, time, original length

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.linktypes = {}              # linktype -> interface id
        self.count = 0
        self.by_stream = {}              # (file index, stream) -> frames

    def frame(self, file_index, stream, frame):
        iface = self.linktypes.setdefault(frame.linktype, len(self.linktypes))
        data = bytes(frame.data)
        self.file.write(self.RECORD.pack(file_index, frame.number, frame.time, frame.orig_len)
                        + struct.pack("<II", iface, len(data)) + data)
        self.count += 1
        key = (file_index, stream)
        self.by_stream[key] = self.by_stream.get(key, 0) + 1

    def frames(self):
        self.file.seek(0)
        head = self.RECORD.size + 8
        while True:
            fixed = self.file.read(head)
            if len(fixed) < head:
                return
            file_index, number, time, orig_len = self.RECORD.unpack_from(fixed)
            iface, size = struct.unpack_from("<II", fixed, self.RECORD.size)
            yield file_index, number, time, orig_len, iface, self.file.read(size)


def extract(paths, output, *, stream=None, code=None, min_severity=Severity.MEDIUM, keylog=None,
            idle_timeout=None, jobs=1, dask=None, progress=None):
    """Write the packets of the connections chosen into the pcapng ``output``; returns
    ``Extracted`` (nothing is written when no connection is chosen)."""
    choice = choose(paths, stream=stream, code=code, min_severity=min_severity,
                    idle_timeout=idle_timeout, jobs=jobs, dask=dask, progress=progress)
    errors = list(choice.errors)
    unreadable = len(choice.report.unreadable) if choice.report is not None else 0
    spool = _Spool()
    files = list(choice.files)
    connections = []                         # (file index, Detail)
    for index, path in enumerate(files):
        one = choice._replace(files={path: choice.files[path]})
        got = drawn_details(one, idle_timeout, limit=1 << 62, on_frame=functools.partial(spool.frame, index),
                            keep=False)
        errors += got.errors
        unreadable += got.unreadable
        connections += [(index, det) for det in got.details]
    if not connections:
        spool.file.close()
        return Extracted(output, (), 0, 0, tuple(errors), unreadable)
    keys = {}
    if keylog is not None:
        keys = key_log_lines(keylog, [det.client_random for _, det in connections])
    comments = {}
    for index, det in connections:
        for frame, texts in _comments(det.file, det.report).items():
            comments.setdefault((index, frame), []).extend(texts)
    lines = [line for _, det in connections for line in keys.get(det.client_random, ())]
    streams = ", ".join(f"{det.file} tcp.stream {det.stream}" for _, det in connections)
    comment = (f"Extracted by pcap-tls-split {__version__}: {len(connections)} connection(s) ({streams}); "
               "Wireshark numbers them from tcp.stream 0 again in this file; the packet comments "
               "name the original frame numbers")
    try:
        with open(output, "wb") as out:
            out.write(section_header(comment))
            for linktype, _ in sorted(spool.linktypes.items(), key=lambda kv: kv[1]):
                out.write(interface(linktype))
            if lines:
                out.write(decryption_secrets(lines))
            for file_index, number, time, orig_len, iface, data in spool.frames():
                out.write(packet(iface, time, data, orig_len, comments.get((file_index, number), ())))
    except OSError as exc:
        raise OSError(f"{output}: cannot write: {exc.strerror or exc}") from None
    finally:
        spool.file.close()
    if keylog is not None:
        for _, det in connections:
            if det.client_random is None:
                errors.append(f"{det.file}: tcp.stream {det.stream}: no ClientHello captured, so no "
                              "key log line can be told to be its own")
            elif det.client_random not in keys:
                errors.append(f"{det.file}: tcp.stream {det.stream}: {keylog} has no line for its "
                              f"client random {det.client_random.hex()[:16]}...")
    renumbered = _new_streams(output, [det for _, det in connections])
    written = tuple(
        ExtractedConnection(det.file, det.stream, new, spool.by_stream.get((index, det.stream), 0),
                            tuple(dict.fromkeys(f.code for f in det.report.findings)),
                            len(keys.get(det.client_random, ())))
        for (index, det), new in zip(connections, renumbered))
    return Extracted(output, written, spool.count, len(lines), tuple(errors), unreadable)


def _new_streams(path, connections):
    """The ``tcp.stream`` of each connection in the extract, by our own reading of it."""
    report = analyze(path, all_connections=True)
    found = {}
    for conn in report.connections:
        found.setdefault((conn.client, conn.server, round(conn.start, 6)), conn.stream)
    return [found.get((det.report.client, det.report.server, round(det.report.start, 6)))
            for det in connections]


COLUMNS = ("file", "stream", "new_stream", "packets", "findings", "key_lines")


def rows(done):
    """One dict per connection written."""
    for c in done.connections:
        yield {"file": c.file, "stream": c.stream, "new_stream": c.new_stream, "packets": c.packets,
               "findings": list(c.findings), "key_lines": c.key_lines}


def render(done, fmt, out, width=0):
    """What was written, in ``fmt``: a table and a sentence, or the rows as JSON, JSONL, CSV."""
    if fmt == "table":
        table = [dict(r, findings=", ".join(r["findings"])) for r in rows(done)]
        headers = ("file", "stream", f"stream in {os.path.basename(done.path)}", "packets", "findings",
                   "key log lines")
        wraps = ("/", None, None, None, ",", None)
        render_module.write_table(table, [render_module.Column(key, header, wrap) for key, header, wrap
                                          in zip(COLUMNS, headers, wraps)], out, width)
        keys = (f"{done.key_lines} key log line(s) embedded: Wireshark decrypts from it alone"
                if done.key_lines else "no key log embedded")
        out.write(f"\nwrote {done.path}: {len(done.connections)} connection(s), {done.packets} packet(s), "
                  f"{keys}; Wireshark numbers its connections from tcp.stream 0 (column 3)\n")
    elif fmt == "csv":
        render_module.write_csv((dict(r, findings=";".join(r["findings"])) for r in rows(done)), COLUMNS, out)
    elif fmt == "jsonl":
        render_module.write_jsonl(rows(done), out)
    else:
        render_module.write_json({"path": done.path, "packets": done.packets, "key_lines": done.key_lines,
                                  "connections": list(rows(done)), "errors": list(done.errors)}, out)
