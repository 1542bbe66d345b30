"""Wireshark's view of the same capture: the cross-check, and decryption with a key log.

``verify(paths)`` has Wireshark's dissectors (tshark, through pyshark) read each
capture again, only on the TLS connections we found, and compares per
connection and side the record sequence (offset, content type, length) and the
first FIN and RST frames with ours. ``analyze(paths, keylog=...)`` and
``records(paths, keylog=...)`` have tshark decrypt records with an SSLKEYLOGFILE
key log and add what they held to the findings and to the record rows.

Theory of operation
-------------------
Our analysis of a file runs first (``_Run``: the library's own per-file run,
keeping each TLS connection's per-side facts as it ends). tshark then reads the
same file once, through ``pyshark.FileCapture`` with:

- fixed preferences (``PREFS``), two passes, an empty personal configuration,
  the C locale (the event loop we give pyshark, ``_Loop``, starts tshark with
  that environment), so nobody's profile changes the answer;
- ``-d tcp.port==P,tls`` for the server ports of the connections where TLS
  starts at the first byte (non-standard ports), never for a STARTTLS port:
  tshark's own dissector there handles the plaintext prologue;
- a display filter down to those ports and to the frames that matter (TLS,
  FIN, RST; or the frames of the records to decrypt), and for ``verify`` a
  protocol filter (``-j``) down to the subtrees it reads.

Each record tshark reports is placed in its side stream (``_frame_records``):
the relative sequence number of the frame's first payload byte plus the
record's position in the frame or, for a PDU reassembled over several
segments, the sequence number of the PDU's start (from this frame's own entry
in ``tcp.segments``). Relative sequence number 1 is offset 0: the first byte
after the SYN (or the first byte captured), as our ``Record.offset``. Our
records and tshark's are matched by connection, direction and offset, never by
order or by guess. Connections are matched by ``tcp.stream`` and endpoints; where
Wireshark numbers a connection differently (its SOCKS dissector takes stream
numbers), by endpoints, and the difference is reported.

For decryption tshark runs with the key log, without application-data
reassembly, the TLS heuristics for HTTP off and ``-d tls.port==P,data``: each
decrypted record's plaintext comes out whole as ``data.data``, in record order.
The first line of the plaintext, and for HTTP/1.x the message it belongs to
(status line or body, by the headers' Content-Length), are read here.

pyshark's machinery is kept inside ``_tshark_packets``: our own event loop,
closed each run; tshark's exit awaited before pyshark's cleanup (whose kill
would race the child watcher); a timeout after which tshark is killed and
reaped; pyshark's exceptions turned into ``TsharkFailed``.
"""

import asyncio
import dataclasses
import functools
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import tempfile
from collections import defaultdict
from dataclasses import dataclass

from . import __version__, tls
from .analyze import _FileRun, expand_inputs
from .analyze import analyze as analyze_captures
from .report import ConnectionReport, InputReport, _plain

INSTALL_HINT = ("this needs tshark, Wireshark's command-line tool: install it "
                "(Debian/Ubuntu: apt-get install tshark) or put it on PATH")

# Every preference that matters is set, so neither defaults nor a profile do
# (the same as the test suite's tshark reference, tests/tshark_ref.py).
PREFS = (
    "tcp.desegment_tcp_streams:TRUE",        # records spanning segments are reassembled
    "tcp.analyze_sequence_numbers:TRUE",
    "tcp.relative_sequence_numbers:TRUE",    # relative seq 1 = our offset 0
    "tcp.reassemble_out_of_order:TRUE",      # out-of-order segments reach TLS in order
    "tcp.no_subdissector_on_error:TRUE",     # retransmitted bytes are not dissected again
    "tcp.check_checksum:FALSE",              # checksum offloading must not stop reassembly
    "ip.check_checksum:FALSE",
    "tcp.try_heuristic_first:FALSE",         # port-registered dissectors first
    "ip.defragment:TRUE",
    "ipv6.defragment:TRUE",
    "tls.desegment_ssl_records:TRUE",
    "tls.desegment_ssl_application_data:TRUE",
)
# For decryption: one record's plaintext at a time, handed to "data", not to HTTP.
DECRYPT_PREFS = ("tls.desegment_ssl_application_data:FALSE",)
TLS_HEURISTICS = ("http_tls", "http2_tls")
# The PDML subtrees verify reads (-j): leaves of these, nothing of the others.
VERIFY_SUBTREES = "ip ipv6 tcp tls tls.record fake-field-wrapper tcp.segments"

# Seconds tshark may take on a file: a floor plus a generous rate.
TIMEOUT_FLOOR = 120.0
TIMEOUT_PER_MB = 5.0

FIRST_LINE_MAX = 60


class TsharkMissing(RuntimeError):
    """tshark (or pyshark) is not installed: the message says what to install."""


class TsharkFailed(RuntimeError):
    """tshark could not read a capture, failed, or ran past its timeout."""


def find_tshark(tshark=None):
    """The path of the tshark to run; ``TsharkMissing`` when there is none (or no pyshark)."""
    if importlib.util.find_spec("pyshark") is None:
        raise TsharkMissing("this needs the Python package pyshark: "
                            "pip install 'pcap-tls-split[wireshark]'")
    path = shutil.which(tshark or "tshark")
    if path is None:
        raise TsharkMissing(INSTALL_HINT)
    return path


# -- running tshark through pyshark ------------------------------------------------

class _Loop(asyncio.SelectorEventLoop):
    """pyshark starts tshark through its event loop: this one gives tshark a fixed environment."""

    def __init__(self, env):
        super().__init__()
        self._env = env
        self.slow_callback_duration = 3600.0  # parsing a packet is slow by asyncio's debug standard

    async def subprocess_exec(self, protocol_factory, *args, **kwargs):
        kwargs.setdefault("env", self._env)
        return await super().subprocess_exec(protocol_factory, *args, **kwargs)


def _env(confdir):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LC_") or k in ("LANG", "LANGUAGE"))}
    env.update(LC_ALL="C", LANG="C", TZ="UTC",
               # an empty personal configuration: nobody's preferences, decode-as
               # entries, key log files or disabled protocols
               WIRESHARK_CONFIG_DIR=confdir)
    return env


@functools.lru_cache(maxsize=None)
def _tshark_version(tshark):
    from pyshark.tshark.tshark import get_tshark_version
    return get_tshark_version(tshark)


# What pyshark strips from each packet's XML before parsing it (tshark_xml.DEL_BAD_XML_CHARS)
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@functools.lru_cache(maxsize=None)
def _capture_class():
    import lxml.objectify
    import pyshark
    from pyshark.tshark.output_parser.tshark_xml import TsharkXmlParser, packet_from_xml_packet

    class _Parser(TsharkXmlParser):
        # pyshark cleans every packet's XML with str.translate over a dict, a third
        # of the whole run on payload-heavy packets: the same cleaning by regex
        def _parse_single_packet(self, packet):
            text = packet.decode(errors="ignore")
            if _BAD_XML.search(text):
                text = _BAD_XML.sub("", text)
            parser = lxml.objectify.makeparser(huge_tree=True, recover=True, encoding="utf-8")
            return packet_from_xml_packet(lxml.objectify.fromstring(text.encode("utf-8"), parser))

    class _Capture(pyshark.FileCapture):
        # pyshark runs `tshark -v` for every capture (0.2 s): once per process is enough
        def _get_tshark_version(self):
            return _tshark_version(self.tshark_path)

        def _setup_tshark_output_parser(self):
            return _Parser()

    return _Capture


def _set_filter(tshark, values):
    """A display-filter set: commas from Wireshark 4.0 on, spaces before."""
    from packaging import version
    separator = ", " if _tshark_version(tshark) >= version.parse("4.0") else " "
    return "{" + separator.join(str(v) for v in sorted(values)) + "}"


def _timeout(path, timeout):
    if timeout is not None:
        return timeout
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return TIMEOUT_FLOOR + TIMEOUT_PER_MB * size / 1e6


def _tshark_packets(path, tshark, parameters, display_filter, on_packet, timeout):
    """Run tshark on ``path`` through pyshark, calling ``on_packet`` with each
    pyshark packet. ``TsharkFailed`` when tshark fails or runs past ``timeout``;
    tshark is always gone (killed and reaped) on return."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _tshark_packets_here(path, tshark, parameters, display_filter, on_packet, timeout)
    # called from a running event loop (a notebook, async code): pyshark's loop
    # cannot run inside it, so it gets a thread of its own
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_tshark_packets_here, path, tshark, parameters, display_filter,
                           on_packet, timeout).result()


def _tshark_packets_here(path, tshark, parameters, display_filter, on_packet, timeout):
    from pyshark.capture.capture import TSharkCrashException
    capture_class = _capture_class()
    with tempfile.TemporaryDirectory(prefix="pcap-tls-split-tshark-") as confdir:
        loop = _Loop(_env(confdir))
        capture = task = None
        try:
            capture = capture_class(os.fspath(path), keep_packets=False, display_filter=display_filter,
                                    tshark_path=tshark, eventloop=loop, custom_parameters=parameters)
            task = loop.create_task(_drain(capture, on_packet, timeout))
            returncode = loop.run_until_complete(task)
            error = getattr(capture, "_last_error_line", None) or ""
        except asyncio.TimeoutError:
            raise TsharkFailed(f"tshark took longer than {timeout:g} s on {path}; stopped") from None
        except TSharkCrashException as exc:
            raise TsharkFailed(f"tshark failed on {path}: {exc}") from None
        finally:
            if capture is not None:
                _kill(loop, capture, task)
            loop.close()
    # tshark exits 2 on a capture cut short in the middle of a packet, after
    # printing all it could read: keep that, fail on anything else
    if returncode and "cut short" not in error:
        raise TsharkFailed(f"tshark could not read {path} (exit {returncode}): {error}")


async def _drain(capture, on_packet, timeout):
    from pyshark.capture.capture import TSharkCrashException
    await asyncio.wait_for(capture.packets_from_tshark(on_packet, close_tshark=False), timeout)
    processes = list(capture._running_processes)
    for process in processes:
        # reap it here: pyshark's cleanup would kill (and reap) it under the child watcher
        await asyncio.wait_for(process.wait(), timeout)
    try:
        await capture.close_async()
    except TSharkCrashException:
        pass  # its exit status is ours to judge
    return max((p.returncode or 0 for p in processes), default=0)


def _kill(loop, capture, task):
    """Whatever happened: no tshark left running, no task left pending or unretrieved."""
    processes = list(getattr(capture, "_running_processes", ()))
    for process in processes:
        if process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    tasks = set(asyncio.all_tasks(loop)) | set(getattr(capture, "_stderr_handling_tasks", ()))
    if task is not None:
        tasks.add(task)
    for pending in tasks:
        pending.cancel()

    async def settle():
        for process in processes:
            await process.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

    interrupted = None
    for _ in range(3):
        try:
            loop.run_until_complete(asyncio.wait_for(settle(), 10))
            break
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted = exc   # a task interrupted earlier re-raises it here: settle again
        except Exception:
            break
    for done in tasks:
        if done.done() and not done.cancelled():
            done.exception()    # retrieved: nothing logged when the loop goes
    capture._running_processes.clear()
    capture._stderr_handling_tasks = []
    loop.run_until_complete(loop.shutdown_asyncgens())
    if interrupted is not None:
        raise interrupted


# -- what tshark says: records placed in their side stream -------------------------

@dataclass(frozen=True, slots=True)
class WiresharkRecord:
    """One TLS record as Wireshark dissects it, placed in its side stream."""

    frame: int
    """The frame Wireshark reports it in (where its reassembly completed)."""
    stream: int
    """Wireshark's ``tcp.stream``."""
    src: str
    dst: str
    offset: int
    """Where its header starts in the side stream (relative sequence number - 1)."""
    type: int
    """Content type on the wire (None: an SSLv2 record)."""
    length: int
    size: int
    """Bytes Wireshark dissected, header included."""
    summary: str = ""
    """Wireshark's one-line description of it (``Handshake Protocol: Client Hello``...)."""
    inner_type: int = None
    """Decrypted TLS 1.3 record: its inner content type."""
    decrypted: bool = False
    """Its content could be read: in the clear, or decrypted with the key log (None: unknown)."""
    protocol: str = None
    """Decrypted application data: the dissector Wireshark handed it to (``Data``...)."""
    plaintext: bytes = None
    """Decrypted application data handed to ``data``: its plaintext."""

    @property
    def complete(self):
        return self.type is not None and self.size == 5 + self.length


def _endpoint(addr, port):
    if addr is None or port is None:
        return None
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _fields(layer, name):
    container = layer.get_field(name)
    return container.all_fields if container is not None else []


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _frame_records(packet):
    """(frame, stream, src, dst, tcp flags, [WiresharkRecord]) of one pyshark packet,
    None without TCP. The innermost TCP header counts (tunnels); TLS quoted in
    an ICMP error is not a top-level layer, so it does not."""
    layers = packet.layers
    tcp_at = None
    for i, layer in enumerate(layers):
        if layer.layer_name == "tcp":
            tcp_at = i
    if tcp_at is None:
        return None
    tcp = layers[tcp_at]
    src = dst = None
    for layer in reversed(layers[:tcp_at]):
        if layer.layer_name in ("ip", "ipv6"):
            name = layer.layer_name
            sport, dport = tcp.get_field("tcp.srcport"), tcp.get_field("tcp.dstport")
            src = _endpoint(layer.get_field(f"{name}.src"), sport)
            dst = _endpoint(layer.get_field(f"{name}.dst"), dport)
            break
    frame = _int(packet.number)
    stream = _int(tcp.get_field("tcp.stream"))
    flags = tcp.get_field("tcp.flags")
    flags = int(flags, 16) if flags else 0
    seq = _int(tcp.get_field("tcp.seq"), 0)
    tcp_len = _int(tcp.get_field("tcp.len"), 0)
    payload = tcp.get_field("tcp.payload")
    if payload is not None:
        payload_start = _int(payload.main_field.pos, 0)
    else:
        port = tcp.get_field("tcp.srcport")
        payload_start = _int(port.main_field.pos, 0) + _int(tcp.get_field("tcp.hdr_len"), 0)
    pdu_starts = []       # relative seq of each PDU reassembled in this frame
    waiting = []          # indexes of records whose plaintext comes next as data.data
    found = []
    for layer in layers[tcp_at + 1:]:
        raw_name = getattr(layer, "_layer_name", layer.layer_name)
        if raw_name in ("fake-field-wrapper", "data"):
            for segment in _fields(layer, "tcp.segment"):
                if _int(segment.show) == frame:
                    lo, size = _int(segment.pos, 0), _int(segment.size, 0)
                    # this frame's part starts at its payload start, unless it is the
                    # PDU's first segment: then the PDU runs to the end of its payload
                    pdu_starts.append(seq - lo if lo else seq + tcp_len - size)
            for data in _fields(layer, "data.data"):
                if waiting:
                    i = waiting.pop(0)
                    try:
                        plaintext = bytes.fromhex(data.raw_value or "")
                    except ValueError:
                        plaintext = None
                    found[i] = dataclasses.replace(found[i], plaintext=plaintext, decrypted=True)
        elif layer.layer_name == "tls":
            records = _tls_layer_records(layer)
            if not records:
                continue
            if records[0][0] >= payload_start:
                base = seq - payload_start          # the frame's own bytes
            elif pdu_starts:
                base = pdu_starts.pop(0)            # a PDU reassembled in this frame
            else:
                continue                            # cannot be placed: left out
            for pos, fields in records:
                found.append(WiresharkRecord(frame=frame, stream=stream, src=src, dst=dst,
                                             offset=base + pos - 1, **fields))
                if fields.get("protocol") == "Data":
                    waiting.append(len(found) - 1)
    return frame, stream, src, dst, flags, found


def _tls_layer_records(layer):
    """[(position, fields)] of the records in one ``tls`` layer. pyshark flattens a
    layer's fields by name, so each record's fields are found by position: its
    content type (or opaque type) at the record's start, the version 1 byte and
    the length 3 bytes on; a decrypted TLS 1.3 record's inner content type sits at
    its start too, after the opaque type."""
    records = _fields(layer, "tls.record")
    if not records:
        return []
    opaque = {}
    for f in _fields(layer, "tls.record.opaque_type"):
        opaque.setdefault(_int(f.pos), _int(f.show))
    types = defaultdict(list)
    for f in _fields(layer, "tls.record.content_type"):
        types[_int(f.pos)].append(_int(f.show))
    lengths = {}
    for f in _fields(layer, "tls.record.length"):
        lengths.setdefault(_int(f.pos), _int(f.show))
    protocols = [(_int(f.pos), f.show) for f in _fields(layer, "tls.app_data_proto")]
    out = []
    for record in records:
        pos, size = _int(record.pos, 0), _int(record.size, 0)
        if pos in opaque:
            wire = opaque[pos]
            inner = types[pos][0] if types.get(pos) else None
        else:
            wire = types[pos][0] if types.get(pos) else None
            inner = None
        if wire is None:
            # SSLv2: no content type; not a record in our sense
            length = lengths.get(pos, size)
        else:
            length = lengths.get(pos + 3, 0)
        protocol = next((name for p, name in protocols if pos <= p < pos + size), None)
        summary = (record.showname or "").split("Record Layer: ", 1)[-1]
        if wire == tls.APPLICATION_DATA:
            # TLS 1.3: an inner type is there once decrypted; TLS 1.2: the plaintext
            # (data.data) that follows says so (``_frame_records``); handed to
            # another dissector (ALPN): unknown
            decrypted = True if inner is not None else (None if protocol not in (None, "Data") else False)
        else:
            decrypted = "Encrypted" not in summary      # "Encrypted Handshake Message", "Encrypted Alert"
        out.append((pos, dict(type=wire, length=length, size=size, summary=summary,
                              inner_type=inner, protocol=protocol, decrypted=decrypted)))
    return out


class _WiresharkView:
    """tshark's records and first FIN/RST per (stream, sender) of one file."""

    def __init__(self):
        self.records = defaultdict(dict)   # (stream, src, dst) -> {offset: WiresharkRecord}
        self.fin = {}                      # (stream, src, dst) -> first FIN frame
        self.rst = {}
        self.ends = {}                     # stream -> frozenset({src, dst})

    def packet(self, packet):
        facts = _frame_records(packet)
        if facts is None:
            return
        frame, stream, src, dst, flags, records = facts
        key = (stream, src, dst)
        self.ends.setdefault(stream, frozenset((src, dst)))
        if flags & 0x01:
            self.fin.setdefault(key, frame)
        if flags & 0x04:
            self.rst.setdefault(key, frame)
        side = self.records[key]
        for record in records:
            side.setdefault(record.offset, record)   # a record reported twice: kept once

    def match(self, stream, ends, taken):
        """Wireshark's stream number for our connection ``stream`` between ``ends``."""
        if self.ends.get(stream) == ends and stream not in taken:
            return stream
        for candidate in sorted(self.ends):
            if self.ends[candidate] == ends and candidate not in taken:
                return candidate
        return None


# -- our side: the library's per-file run, keeping what the cross-check needs ----------

@dataclass
class _OurSide:
    role: str
    src: str
    dst: str
    fin: int = None
    rst: int = None
    records: list = dataclasses.field(default_factory=list)


@dataclass
class _OurConnection:
    stream: int
    client: str
    server: str
    starttls: bool
    sides: dict
    report: ConnectionReport = None
    wanted: list = dataclasses.field(default_factory=list)
    """(finding index, evidence key, connection.Side, Record) of the records a finding is about."""
    context: dict = dataclasses.field(default_factory=dict)
    """(sender, offset of a wanted record) -> the application data records it sent just
    before it, in stream order (to find the HTTP message a body belongs to)."""


class _Run(_FileRun):
    """The library's run of one file, noting each TLS connection as it ends."""

    def __init__(self, path, options, on_connection=None, on_record=None, on_tls=None):
        super().__init__(path, options, on_connection, on_record)
        self.on_tls = on_tls

    def connection_ended(self, conn):
        super().connection_ended(conn)
        if self.on_tls is None or not conn.is_tls:
            return
        stream = self.options.get("stream")
        if stream is None or conn.stream == stream:
            self.on_tls(conn)


def _our_connection(conn, report=None):
    sides = {}
    for side in (conn.client, conn.server):
        role = conn.role(side)
        peer = conn.peer(side)
        sides[role] = _OurSide(role, side.endpoint, peer.endpoint,
                               fin=side.fin[0] if side.fin else None,
                               rst=side.rst[0] if side.rst else None)
    midstream = conn.midstream or any(s.stream.midstream for s in (conn.a, conn.b))
    starts = [s.tracker.tls_start for s in (conn.a, conn.b)
              if s.tracker is not None and s.tracker.tls_start is not None]
    starttls = not midstream and any(start > 0 for start in starts)
    return _OurConnection(conn.stream, conn.client.endpoint, conn.server.endpoint,
                          starttls, sides, report)


def _port(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def _decode_as(connections):
    """Server ports to decode as TLS: those where TLS starts at the first byte, not a
    port where a STARTTLS connection runs (tshark's own dissector handles those)."""
    direct = {_port(c.server) for c in connections if not c.starttls}
    starttls = {_port(c.server) for c in connections if c.starttls}
    return sorted(direct - starttls)


def _parameters(force, prefs=(), extra=()):
    parameters = ["-2"]
    for pref in PREFS + tuple(prefs):
        parameters += ["-o", pref]
    for port in sorted(force):
        parameters += ["-d", f"tcp.port=={port},tls"]
    return parameters + list(extra)


def _ports_filter(tshark, connections):
    return f"tcp.port in {_set_filter(tshark, {_port(c.server) for c in connections})}"


# -- verify --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SideCheck:
    """One side of a connection: our records and closes against Wireshark's."""

    side: str
    """``client`` or ``server``: the sender of these records."""
    src: str
    records: int
    """Our complete records."""
    wireshark_records: int
    """Wireshark's complete records (SSLv2 ones left out)."""
    fin: int
    """Frame of our first FIN of this side (None: none)."""
    wireshark_fin: int
    rst: int
    wireshark_rst: int
    difference: dict = None
    """The first record where the two differ: ``{"index", "ours", "wireshark"}``, each a
    record (``offset``, ``type``, ``length``, frames) or None where one view has none."""

    @property
    def agree(self):
        return self.difference is None and self.fin == self.wireshark_fin and self.rst == self.wireshark_rst


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """One TLS connection: whether Wireshark sees the same records and closes."""

    file: str
    stream: int
    wireshark_stream: int
    """Wireshark's ``tcp.stream`` for it (None: Wireshark showed no TLS, FIN or RST of it)."""
    client: str
    server: str
    sides: tuple
    """``SideCheck`` of the client, then of the server."""

    @property
    def agree(self):
        return self.stream == self.wireshark_stream and all(s.agree for s in self.sides)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` returns: the inputs and each TLS connection compared."""

    inputs: tuple
    connections: tuple
    not_compared: tuple = ()
    """Paths of the inputs tshark could not read (the reason is in their ``errors``)."""

    @property
    def agree(self):
        return all(c.agree for c in self.connections)

    @property
    def unreadable(self):
        """Inputs that could not be read at all, by us or by tshark."""
        return [i for i in self.inputs if i.format is None or i.path in self.not_compared]

    def to_dict(self):
        connections = []
        for c in self.connections:
            connections.append({
                "file": c.file, "stream": c.stream, "wireshark_stream": c.wireshark_stream,
                "client": c.client, "server": c.server, "agree": c.agree,
                "sides": {s.side: {"src": s.src, "agree": s.agree,
                                   "records": {"ours": s.records, "wireshark": s.wireshark_records},
                                   "fin": {"ours": s.fin, "wireshark": s.wireshark_fin},
                                   "rst": {"ours": s.rst, "wireshark": s.wireshark_rst},
                                   "difference": s.difference} for s in c.sides}})
        agree = sum(1 for c in self.connections if c.agree)
        return {"schema": 1, "tool": {"name": "pcap-tls-split", "version": __version__},
                "inputs": [_plain(i) for i in self.inputs], "connections": connections,
                "summary": {"connections": len(self.connections), "agree": agree,
                            "differ": len(self.connections) - agree}}


def _record_view(record, frames):
    return {"offset": record.offset, "type": record.type, "length": record.length, "frames": frames}


def _compare_side(ours, view, key):
    mine = sorted((r for r in ours.records if r.complete), key=lambda r: r.offset)
    theirs = [r for _, r in sorted(view.records.get(key, {}).items()) if r.complete] if key else []
    difference = None
    for i in range(max(len(mine), len(theirs))):
        a = mine[i] if i < len(mine) else None
        b = theirs[i] if i < len(theirs) else None
        if a is not None and b is not None and (a.offset, a.type, a.length) == (b.offset, b.type, b.length):
            continue
        difference = {"index": i,
                      "ours": None if a is None else _record_view(a, list(a.frames)),
                      "wireshark": None if b is None else _record_view(b, [b.frame])}
        break
    return SideCheck(ours.role, ours.src, len(mine), len(theirs), ours.fin,
                     view.fin.get(key) if key else None, ours.rst,
                     view.rst.get(key) if key else None, difference)


def _verify_file(path, options, tshark, timeout):
    connections = {}
    rows = defaultdict(list)

    def on_tls(conn):
        connections[conn.stream] = _our_connection(conn)

    run = _Run(path, options, on_record=lambda row: rows[row.stream].append(row), on_tls=on_tls)
    inp = run.run()
    for stream, conn in connections.items():
        for row in rows.get(stream, ()):
            conn.sides[row.side].records.append(row)
    views = {}
    if connections and inp.format is not None:
        conns = list(connections.values())
        force = _decode_as(conns)
        try:
            view = _verify_view(path, conns, force, tshark, timeout)
            views = {stream: view for stream in connections}
            # a STARTTLS protocol tshark does not follow (IRC, RDP...): decode its
            # port as TLS after all (the plaintext before shows as continuation data)
            unseen = [c for c in conns if c.starttls and not _has_records(view, c)]
            if unseen:
                again = _verify_view(path, conns, set(force) | {_port(c.server) for c in unseen},
                                     tshark, timeout)
                views.update({c.stream: again for c in unseen})
        except TsharkFailed as exc:
            return dataclasses.replace(inp, errors=inp.errors + (str(exc),)), None
    checks = []
    taken = set()
    for stream in sorted(connections):
        conn = connections[stream]
        view = views.get(stream, _WiresharkView())
        theirs = view.match(stream, frozenset((conn.client, conn.server)), taken)
        taken.add(theirs)
        sides = tuple(_compare_side(conn.sides[role], view,
                                    (theirs, conn.sides[role].src, conn.sides[role].dst)
                                    if theirs is not None else None)
                      for role in ("client", "server"))
        checks.append(ConnectionCheck(path, stream, theirs, conn.client, conn.server, sides))
    return inp, checks


def _verify_view(path, connections, force, tshark, timeout):
    view = _WiresharkView()
    display = (f"{_ports_filter(tshark, connections)} and "
               "(tls or tcp.flags.fin == 1 or tcp.flags.reset == 1)")
    parameters = _parameters(force, extra=["-j", VERIFY_SUBTREES])
    _tshark_packets(path, tshark, parameters, display, view.packet, _timeout(path, timeout))
    return view


def _has_records(view, conn):
    ends = frozenset((conn.client, conn.server))
    return any(records for (stream, src, dst), records in view.records.items()
               if frozenset((src, dst)) == ends)


def verify(paths, *, stream=None, idle_timeout=None, tshark=None, timeout=None, jobs=1):
    """Compare our records and closes with Wireshark's on every TLS connection.

    ``paths``: a path or a list (files, directories; not ``-``: the file is read
    twice). ``stream``: only this ``tcp.stream``. ``tshark``: the tshark to run
    (default: the one on PATH). ``timeout``: seconds tshark may take per file
    (default: from the file's size). ``jobs``: files verified at once (tshark
    runs beside our analysis of the next file). Returns a ``VerifyReport``; raises
    ``TsharkMissing`` before reading anything when tshark is not installed.
    """
    tshark = find_tshark(tshark)
    options = {"all_connections": False, "stream": stream, "idle_timeout": idle_timeout}

    def one(path):
        if path == "-":
            return InputReport(path="-", errors=(
                "-: verify reads each capture twice (ours and tshark's): give a file",)), []
        return _verify_file(path, options, tshark, timeout)

    paths = list(expand_inputs(paths))
    if jobs > 1 and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one, paths))
    else:
        results = [one(path) for path in paths]
    return VerifyReport(inputs=tuple(inp for inp, _ in results),
                        connections=tuple(check for _, found in results for check in found or ()),
                        not_compared=tuple(inp.path for inp, found in results if found is None))


# -- rendering verify ----------------------------------------------------------------

def _frame_text(value):
    return "-" if value is None else str(value)


def _pair(ours, theirs):
    """``ours`` when the two agree, ``ours vs theirs`` when they do not."""
    return _frame_text(ours) if ours == theirs else f"{_frame_text(ours)} vs {_frame_text(theirs)}"


def _record_text(record):
    if record is None:
        return "none"
    frames = ",".join(map(str, record["frames"][:4])) + ("..." if len(record["frames"]) > 4 else "")
    return (f"{tls.CONTENT_TYPES.get(record['type'], record['type'])} {record['length']} B "
            f"at offset {record['offset']} (frame {frames})")


def difference_text(side):
    """One line: the first record where the two views differ, or ''."""
    d = side.difference
    if d is None:
        return ""
    return f"record #{d['index']}: ours {_record_text(d['ours'])}; Wireshark {_record_text(d['wireshark'])}"


def verify_rows(report):
    """One row per connection side: what was compared and the first difference."""
    for c in report.connections:
        for s in c.sides:
            yield {"file": c.file, "stream": c.stream,
                   "wireshark_stream": c.wireshark_stream, "side": s.side, "src": s.src,
                   "records": s.records, "wireshark_records": s.wireshark_records,
                   "fin": s.fin, "wireshark_fin": s.wireshark_fin, "rst": s.rst,
                   "wireshark_rst": s.wireshark_rst, "agree": s.agree,
                   "difference": difference_text(s)}


def render_verify(report, fmt, out):
    """Write the verify report: ``table`` (a table per connection), ``json``, ``jsonl`` or ``csv``."""
    from tabulate import tabulate
    if fmt == "json":
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
        return
    if fmt == "jsonl":
        whole = report.to_dict()
        for conn in whole["connections"]:
            out.write(json.dumps(conn) + "\n")
        out.write(json.dumps({"summary": whole["summary"], "inputs": whole["inputs"]}) + "\n")
        return
    if fmt == "csv":
        import csv
        rows = list(verify_rows(report))
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
        return
    for c in report.connections:
        verdict = "agree" if c.agree else "DIFFER"
        numbering = "" if c.stream == c.wireshark_stream else (
            f"; Wireshark: tcp.stream {_frame_text(c.wireshark_stream)}"
            if c.wireshark_stream is not None else "; Wireshark shows none of its TLS, FIN or RST frames")
        out.write(f"{c.file} stream {c.stream}: {c.client} -> {c.server}: {verdict}{numbering}\n")
        table = [[s.side, s.src, _pair(s.records, s.wireshark_records), _pair(s.fin, s.wireshark_fin),
                  _pair(s.rst, s.wireshark_rst), difference_text(s)] for s in c.sides]
        out.write(tabulate(table, headers=("side", "src", "records", "first FIN", "first RST",
                                           "first difference (ours; Wireshark)"),
                           tablefmt="simple", disable_numparse=True) + "\n\n")
    agree = sum(1 for c in report.connections if c.agree)
    out.write(f"{len(report.connections)} TLS connection(s): {agree} agree with Wireshark, "
              f"{len(report.connections) - agree} differ (a value 'A vs B' is ours vs Wireshark's)\n")
    for inp in report.inputs:
        for error in inp.errors:
            out.write(f"error: {error}\n")


# -- decryption ---------------------------------------------------------------------

HTTP_START = re.compile(rb"^(?:HTTP/\d(?:\.\d)? (\d{3})[^\r\n]*|[A-Z][A-Z-]{1,15} \S+ HTTP/\d(?:\.\d)?)\r?\n")


def first_line(data, limit=FIRST_LINE_MAX):
    """The first line of ``data``, printable (others as ``.``), cut at ``limit`` characters."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in line[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _http_message(head):
    """(start line, status or None, header length or None, body length or None) of an
    HTTP/1.x message starting at ``head``; None when it does not start one."""
    match = HTTP_START.match(head)
    if match is None:
        return None
    start = match.group(0).rstrip(b"\r\n").decode("latin-1")
    status = int(match.group(1)) if match.group(1) else None
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return start, status, None, None
    header_length = end + 4
    body = None
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            body = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            body = -1  # chunked: the body runs on past this point
    if body is None and (status is None or status < 200 or status in (204, 304)):
        body = 0    # a request without a length, or a response that has no body (RFC 9112 6.3)
    return start, status, header_length, body


def describe(record, plaintext, earlier=()):
    """What a record held, as evidence: ``readable`` (in the clear, or decrypted with
    the key log; else ``reason``), ``wireshark`` (Wireshark's description of it),
    ``content_type`` (the inner one of a TLS 1.3 record), ``first_line`` of its
    plaintext; for HTTP/1.x,
    ``http_message`` (the start line of the message it belongs to), ``http_status``
    and ``part``: ``whole`` (the whole message), ``headers`` (start line and
    headers, the body follows), ``start`` (start line and part of the headers),
    ``more_headers`` or ``body`` / ``body_part`` (all / part of the body).
    ``earlier``: the plaintexts the same side sent just before it, oldest first
    (to find the message a body belongs to)."""
    info = {"index": record.index, "offset": record.offset, "frame": record.last_frame,
            "readable": False}
    if plaintext is None:
        info["reason"] = ("it never completed (a partial record cannot be decrypted)"
                          if not record.complete else "Wireshark does not show it")
        return info
    info["wireshark"] = plaintext.summary
    if not plaintext.decrypted:
        info["reason"] = ("Wireshark could not decrypt it with this key log" if plaintext.decrypted is False
                          else f"Wireshark hands it to {plaintext.protocol}: its plaintext is not shown here")
        return info
    info["readable"] = True
    inner = plaintext.inner_type if plaintext.inner_type is not None else plaintext.type
    info["content_type"] = tls.CONTENT_TYPES.get(inner, str(inner))
    if inner != tls.APPLICATION_DATA or plaintext.plaintext is None:
        return info
    data = plaintext.plaintext
    info["length"] = len(data)
    info["first_line"] = first_line(data)
    # the message this record belongs to: one it starts, or one an earlier record began
    before = b""
    for chunk in [b""] + list(reversed(earlier)):
        before = chunk + before
        message = _http_message(before + data)
        if message is None:
            continue
        start, status, header_length, body = message
        done, total = len(before), len(before) + len(data)   # message bytes before / after it
        end = header_length + body if header_length is not None and body not in (None, -1) else None
        if end is not None and done >= end:
            break                   # that message ended before this record
        if header_length is None or done >= header_length:
            part = ("start" if not done else "more_headers") if header_length is None else \
                ("body" if done == header_length and end is not None and total >= end else "body_part")
        elif done:
            part = "more_headers"
        else:
            part = "whole" if end is not None and total >= end else "headers"
        info.update(protocol="http", http_message=start, part=part)
        if status is not None:
            info["http_status"] = status
        break
    return info


def phrase(info):
    """``info`` (from ``describe``) in words: 'the body of HTTP/1.1 401 Unauthorized'."""
    if not info.get("readable"):
        return None
    if "http_message" in info:
        message = info["http_message"]
        line = "status line" if "http_status" in info else "request line"
        return {"whole": f"{message} (the whole message)",
                "headers": f"{message} (its {line} and headers)",
                "start": f"the start of {message} (part of its headers)",
                "more_headers": f"part of the headers of {message}",
                "body": f"the body of {message}",
                "body_part": f"part of the body of {message}"}[info["part"]]
    if info.get("content_type") != "application_data":
        return f"a TLS {info.get('content_type')} record ({info.get('wireshark')})"
    if "first_line" in info:
        return f"data beginning {info['first_line']!r}"
    return f"application data Wireshark dissects as {info.get('protocol')}"


def _name(finding, key):
    """How a finding's message names the record under ``key``."""
    evidence = finding.evidence
    if key == "first_pending":
        if evidence.get("post_handshake_only"):
            return "the first pending record"
        many = evidence.get("records_pending", evidence.get("records_lost", 1)) > 1
        return "the first lost record" if many else "the lost record"
    if key == "partial":
        return {"truncated_record": "the cut record",
                "capture_ended_inside_record": "the unfinished record"}.get(
                    finding.code, "the record it closed inside")
    if finding.code == "truncated_record":
        return "the last whole record before it"
    return "the last record received"


def _wanted_records(conn, report):
    """(finding index, evidence key, side, Record) of the records each finding is about."""
    wanted = []
    for i, finding in enumerate(report.findings):
        evidence = finding.evidence
        actor = conn.client if finding.side == "client" else conn.server
        peer = conn.peer(actor)

        def records_of(side):
            kept = list(side.records)
            if side.tracker is not None and side.tracker.partial is not None:
                kept.append(side.tracker.partial)
            return kept

        def by_index(side, index):
            return next((r for r in records_of(side) if r.index == index), None)

        def last_before_reach(side):
            reach = actor.close.reach if actor.close is not None else None
            before = [r for r in records_of(side) if r.complete and reach is not None and r.end <= reach]
            return before[-1] if before else None

        picks = []
        code = finding.code
        if code == "close_before_pending_records":
            if evidence.get("last_received"):
                picks.append(("last_received", peer, by_index(peer, evidence["last_received"]["index"])))
            picks.append(("first_pending", peer, by_index(peer, evidence["first_pending"]["index"])))
        elif code == "close_inside_record":
            index = evidence["record_index"]
            picks.append(("last_received", peer, by_index(peer, index - 1)))
            picks.append(("partial", peer, by_index(peer, index)))
        elif code == "reset_on_data_after_close" and evidence.get("lost") == "application_data":
            picks.append(("last_received", peer, last_before_reach(peer)))
            first = next((r for r in records_of(peer) if r.first_frame == evidence["first_lost_frame"]), None)
            picks.append(("first_pending", peer, first))
        elif code == "close_before_peer_finished":
            picks.append(("last_received", peer, last_before_reach(peer)))
        elif code in ("truncated_record", "capture_ended_inside_record"):
            index = evidence["record_index"]
            picks.append(("last_received", actor, by_index(actor, index - 1)))
            picks.append(("partial", actor, by_index(actor, index)))
        for key, side, record in picks:
            if record is not None:
                wanted.append((i, key, side, record))
    return wanted


def _context(side, records, depth=8):
    """The side's application-data records up to ``depth`` before each wanted one."""
    kept = [r for r in side.records if r.type == tls.APPLICATION_DATA]
    out = {}
    for record in records:
        before = [r for r in kept if r.offset < record.offset][-depth:]
        out[record.offset] = before
    return out


def _decrypt(path, keylog, connections, frames, tshark, timeout, display=None):
    """tshark's records of ``frames`` (or of ``display``), decrypted with ``keylog``:
    {(stream, src, dst): {offset: WiresharkRecord}}."""
    view = _WiresharkView()
    prefs = DECRYPT_PREFS + (f"tls.keylog_file:{os.path.abspath(keylog)}",)
    extra = []
    for heuristic in TLS_HEURISTICS:
        extra += ["--disable-heuristic", heuristic]
    for port in sorted({_port(c.server) for c in connections}):
        extra += ["-d", f"tls.port=={port},data"]
    parameters = _parameters(_decode_as(connections), prefs, extra)
    if display is None:
        display = f"frame.number in {_set_filter(tshark, frames)}"
    _tshark_packets(path, tshark, parameters, display, view.packet, _timeout(path, timeout))
    return view


def _lookup(view, conn_stream, src, dst, offset):
    record = view.records.get((conn_stream, src, dst), {}).get(offset)
    if record is not None:
        return record
    found = [side[offset] for (stream, s, d), side in view.records.items()
             if s == src and d == dst and offset in side]
    return found[0] if len(found) == 1 else None


def _with_plaintext(conn, view):
    """``conn.report`` with its findings' evidence and messages telling what the records held."""
    texts = defaultdict(dict)   # finding index -> {key: info}
    for i, key, side, record in conn.wanted:
        src, dst = side.endpoint, conn_peer_endpoint(conn, side.endpoint)
        plaintext = _lookup(view, conn.stream, src, dst, record.offset) if record.complete else None
        earlier = []
        for r in conn.context.get((side.endpoint, record.offset), ()):
            text = _lookup(view, conn.stream, src, dst, r.offset)
            if text is not None and text.plaintext is not None:
                earlier.append(text.plaintext)
        texts[i][key] = describe(record, plaintext, earlier)
    findings = list(conn.report.findings)
    for i, infos in texts.items():
        finding = findings[i]
        words = []
        for key in ("first_pending", "partial", "last_received"):
            if key in infos:
                said = phrase(infos[key])
                name = _name(finding, key)
                if said is not None:
                    words.append(f"{name} was {said}")
                elif key != "last_received":
                    words.append(f"{name} could not be read: {infos[key]['reason']}")
        evidence = dict(finding.evidence, app_data=infos)
        message = finding.message + ("; " + "; ".join(words) if words else "")
        findings[i] = dataclasses.replace(finding, evidence=evidence, message=message)
    return dataclasses.replace(conn.report, findings=tuple(findings))


def conn_peer_endpoint(conn, src):
    return conn.server if src == conn.client else conn.client


def analyze(paths, *, keylog, tshark=None, timeout=None, on_connection=None, **options):
    """``pcap_tls_split.analyze`` with the plaintext of the records around each finding.

    Each finding about records (a close before pending records, inside a record,
    data lost to a RST, a truncated record) gains ``evidence["app_data"]``: for
    ``last_received``, ``first_pending`` and ``partial`` (the ones that apply), what
    Wireshark decrypted with the key log (``describe``), and its message says it
    in words. ``options`` are ``pcap_tls_split.analyze``'s. ``on_connection`` is
    called with each listed connection once all are done. Raises ``TsharkMissing``
    before reading anything when tshark is not installed; a file tshark cannot
    decrypt keeps its findings as they are, with the reason in its ``inputs[].errors``.
    """
    tshark = find_tshark(tshark)
    report = analyze_captures(paths, **options)
    flagged = defaultdict(dict)          # file -> {stream: ConnectionReport with findings}
    for conn in report.connections:
        if conn.findings:
            flagged[conn.file][conn.stream] = conn
    decorated, notes = {}, defaultdict(list)
    for path, reports in flagged.items():
        try:
            if path == "-":
                raise TsharkFailed("standard input cannot be read a second time by tshark")
            decorated.update({(path, c.stream): c for c in _decorate(
                path, reports, keylog, tshark, timeout, options.get("idle_timeout"))})
        except TsharkFailed as exc:
            notes[path].append(f"plaintext not added: {exc}")
    connections = tuple(decorated.get((c.file, c.stream), c) for c in report.connections)
    inputs = tuple(dataclasses.replace(i, errors=i.errors + tuple(notes[i.path])) if notes.get(i.path) else i
                   for i in report.inputs)
    for conn in connections if on_connection is not None else ():
        on_connection(conn)
    return dataclasses.replace(report, inputs=inputs, connections=connections)


def _decorate(path, reports, keylog, tshark, timeout, idle_timeout):
    """The reports of ``path``'s flagged connections with plaintext: our analysis runs
    again to reach the records the findings are about, tshark decrypts them."""
    connections = []

    def on_tls(conn):
        report = reports.get(conn.stream)
        if report is None:
            return
        ours = _our_connection(conn, report)
        ours.wanted = _wanted_records(conn, report)
        sides = defaultdict(list)
        for _, _, side, record in ours.wanted:
            sides[side].append(record)
        for side, records in sides.items():
            for offset, before in _context(side, records).items():
                ours.context[(side.endpoint, offset)] = before
        connections.append(ours)

    _Run(path, {"idle_timeout": idle_timeout}, on_tls=on_tls).run()
    frames = set()
    for conn in connections:
        for _, _, _, record in conn.wanted:
            frames.update(record.frames)
        for before in conn.context.values():
            for record in before:
                frames.update(record.frames)
    if not frames:
        return []
    view = _decrypt(path, keylog, connections, frames, tshark, timeout)
    return [_with_plaintext(conn, view) for conn in connections]


@dataclass(frozen=True, slots=True)
class RecordText:
    """What one record held, as Wireshark decrypted it."""

    row: object
    """The ``report.RecordRow``."""
    plaintext: str = None
    """One printable line: the first line of decrypted application data, or
    ``[Wireshark's description]`` of a record that is not application data, or
    ``?`` when it could not be decrypted."""
    info: dict = None
    """``describe``'s evidence for it."""


def records(paths, *, keylog, stream=None, idle_timeout=None, tshark=None, timeout=None):
    """``pcap_tls_split.records`` with the plaintext of each record: ``(texts, inputs)``,
    a list of ``RecordText`` in the order found and the ``InputReport`` of each
    input. Raises ``TsharkMissing`` up front; the records of a file tshark cannot
    decrypt get no plaintext, and the reason is in its input's ``errors``."""
    tshark = find_tshark(tshark)
    options = {"all_connections": False, "stream": stream, "idle_timeout": idle_timeout}
    texts, inputs = [], []
    for path in expand_inputs(paths):
        rows, connections = [], {}
        run = _Run(path, options, on_record=rows.append,
                   on_tls=lambda conn: connections.setdefault(conn.stream, _our_connection(conn)))
        inp = run.run()
        view = None
        if rows and connections:
            try:
                if path == "-":
                    raise TsharkFailed("standard input cannot be read a second time by tshark")
                conns = list(connections.values())
                view = _decrypt(path, keylog, conns, None, tshark, timeout,
                                display=f"{_ports_filter(tshark, conns)} and tls")
            except TsharkFailed as exc:
                inp = dataclasses.replace(inp, errors=inp.errors + (f"plaintext not added: {exc}",))
        inputs.append(inp)
        earlier = defaultdict(list)
        for row in rows:
            conn = connections.get(row.stream)
            if view is None or conn is None:
                texts.append(RecordText(row))
                continue
            dst = conn_peer_endpoint(conn, row.src)
            found = _lookup(view, row.stream, row.src, dst, row.offset) if row.complete else None
            info = describe(row, found, earlier[(row.stream, row.src)][-8:])
            if found is not None and found.plaintext is not None:
                earlier[(row.stream, row.src)].append(found.plaintext)
            texts.append(RecordText(row, _one_line(info, found), info))
    return texts, inputs


def _one_line(info, found):
    if found is None:
        return "?" if info.get("reason", "").startswith("Wireshark") else ""
    if not info["readable"]:
        return "?" if found.type == tls.APPLICATION_DATA else f"[{found.summary}]"
    if "first_line" in info:
        if info.get("part") == "body":
            return f"{info['first_line']}  (body of {info['http_message']})"
        return info["first_line"]
    return f"[{found.summary}]"


def render_records(texts, fmt, out):
    """``report.render_records`` with a ``plaintext`` column (key in JSON)."""
    from . import report
    if fmt == "table":
        buffer = io.StringIO()
        report.render_records([t.row for t in texts], "table", buffer)
        lines = buffer.getvalue().splitlines()
        width = max((len(line) for line in lines), default=0)
        heads = ["plaintext", "-" * max((len(t.plaintext or "") for t in texts), default=9)]
        cells = heads + [t.plaintext or "" for t in texts]
        for line, cell in zip(lines, cells):
            out.write(f"{line.ljust(width)}  {cell}".rstrip() + "\n")
        return
    if fmt == "csv":
        import csv
        writer = csv.DictWriter(out, fieldnames=report.RECORD_COLUMNS + (
            "straddling", "coalesced", "complete", "plaintext"))
        writer.writeheader()
        for t in texts:
            d = report.record_dict(t.row)
            writer.writerow(dict({k: d[k] for k in writer.fieldnames if k in d}, plaintext=t.plaintext or ""))
        return
    dicts = [dict(report.record_dict(t.row), plaintext=t.plaintext, app_data=t.info) for t in texts]
    if fmt == "jsonl":
        for d in dicts:
            out.write(json.dumps(d) + "\n")
        return
    out.write("[" + ",\n".join("\n" + json.dumps(d) if i == 0 else json.dumps(d)
                               for i, d in enumerate(dicts)) + "\n]\n")
