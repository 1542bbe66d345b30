"""Wireshark's tshark as the reference for TLS record boundaries (stdlib only).

    tshark_records(path)  -> {(stream, src): [(content_type, length), ...]}
    tshark_streams(path)  -> {stream: (first_frame, "ipA:portA", "ipB:portB")}
    tshark_record_details(path) -> [dict, ...]  one per record, with the frame
                                   tshark reports it in and its sequence number

tshark runs with the package's fixed preferences (PREFS), two passes (-2, the view the
Wireshark GUI shows), no name resolution, the C locale, and an empty personal
configuration directory (WIRESHARK_CONFIG_DIR), so that nobody's own
preferences, decode-as entries or key log files change the answer.

Records come from PDML output rather than `-T fields`: a frame may hold several
records, SSLv2 records have no content type, and decrypted TLS 1.3 records
(pcapng files with a decryption secrets block) carry two content types
(`tls.record.opaque_type` on the wire, the inner `tls.record.content_type`), so
flat comma-separated field lists lose the pairing.  Only the needed PDML lines
are parsed (tshark writes one element per line, two spaces of indent per
level): an XML parser takes minutes on captures with large reassembled or
decrypted payloads.

tshark reports a record in the frame where its reassembly completes.  Each
record's sequence number is computed from that frame's TCP sequence number and
the record's position in the frame, or, for a PDU reassembled over several
segments, from the first segment of the reassembly; the records of each
direction are returned sorted by it, so in stream order whatever the frame
order, and a record reported twice is kept once.

Content types are the ones on the wire (for a decrypted TLS 1.3 record the
opaque type 23, not the inner type).  SSLv2 records (2- or 3-byte header, no
content type; not records in the project's sense) are left out unless
include_sslv2=True, then they come as (None, body_length).  TLS inside ICMP
error quotes is ignored.  The sender is the innermost IP header's (tunnels).
"""

import html
import os
import re
import subprocess
import tempfile
import threading

__all__ = ["PREFS", "TsharkError", "tshark_command", "tshark_records",
           "tshark_record_details", "tshark_streams"]

# The preferences are the package's own (every one that matters is set, so
# neither defaults nor a profile do): the reference differs in how it reads
# tshark's output, not in how tshark runs.
from pcap_tls_split.wireshark.tshark import PREFS  # noqa: E402


class TsharkError(RuntimeError):
    pass


def tshark_command(path, tls_ports=(), tshark="tshark", display_filter="tcp",
                   two_pass=True, extra_prefs=(), output=("-T", "pdml")):
    """The tshark command line run for `path`."""
    cmd = [tshark, "-n"]
    if two_pass:
        cmd.append("-2")
    for pref in tuple(PREFS) + tuple(extra_prefs):
        cmd += ["-o", pref]
    for port in tls_ports:
        cmd += ["-d", "tcp.port==%d,tls" % int(port)]
    cmd += ["-r", os.fspath(path)] + list(output)
    if display_filter:
        cmd += ["-Y", display_filter]
    return cmd


def _env(confdir):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LC_") or k in ("LANG", "LANGUAGE"))}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    env["TZ"] = "UTC"
    # an empty personal configuration: no preferences, decode-as entries,
    # key log files or disabled protocols of whoever runs this
    env["WIRESHARK_CONFIG_DIR"] = confdir
    return env


def _stderr_tail(err):
    lines = [l for l in err.splitlines() if "dangerous" not in l]
    return " | ".join(lines[-5:])


def _run_lines(cmd, timeout):
    """Run tshark, yield its stdout line by line (bytes)."""
    with tempfile.TemporaryDirectory(prefix="tshark_ref_") as confdir, \
            tempfile.TemporaryFile() as errf:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf,
                                    stdin=subprocess.DEVNULL, env=_env(confdir))
        except OSError as exc:
            raise TsharkError("cannot run %s: %s" % (cmd[0], exc))
        timed_out = []

        def kill():
            timed_out.append(True)
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            for line in proc.stdout:
                yield line
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errf.seek(0)
        err = errf.read().decode("utf-8", "replace")
    if timed_out:
        raise TsharkError("tshark timed out after %ss on %s" % (timeout, cmd))
    # tshark exits 2 on a capture cut short in the middle of a packet, after
    # printing all it could read: keep that, fail on anything else
    if rc != 0 and "cut short" not in err:
        raise TsharkError("tshark exited %d: %s" % (rc, _stderr_tail(err)))


_ELEM_RE = re.compile(rb'^( *)<(proto|field) name="([^"]*)"')
_ATTR_RE = re.compile(rb' (pos|size|show|showname)="([^"]*)"')
_SEG_RE = re.compile(r"Frame: (\d+), payload: (\d+)-(\d+)")
_TCP_INT = ("tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq",
            "tcp.seq_raw", "tcp.hdr_len", "tcp.len")
_WANTED = frozenset(_TCP_INT + (
    "num", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.segment_data", "tcp.segments", "tcp.segment",
    "tls.record", "tls.record.content_type", "tls.record.opaque_type",
    "tls.record.version", "tls.record.length"))


def _iter_packets(cmd, timeout):
    """Per PDML packet, its relevant elements: [(depth, kind, name, attrs)]
    with depth 1 for top-level protos, kind "proto" or "field"."""
    elems = None
    for line in _run_lines(cmd, timeout):
        if line.startswith(b"<packet"):
            elems = []
            continue
        if line.startswith(b"</packet"):
            if elems is not None:
                yield elems
            elems = None
            continue
        if elems is None:
            continue
        m = _ELEM_RE.match(line)
        if not m:
            continue
        kind = m.group(2).decode()
        name = m.group(3).decode("utf-8", "replace")
        if kind == "field" and name not in _WANTED:
            continue
        attrs = {}
        for k, v in _ATTR_RE.findall(line):
            v = v.decode("utf-8", "replace")
            attrs[k.decode()] = html.unescape(v) if "&" in v else v
        elems.append((len(m.group(1)) // 2, kind, name, attrs))


def _int(v, default=None):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _endpoint(addr, port):
    if addr is None or port is None:
        return None
    if ":" in addr:
        return "[%s]:%s" % (addr, port)
    return "%s:%s" % (addr, port)


class _Packet:
    """What one frame says: its innermost TCP header and its TLS records."""

    def __init__(self):
        self.frame = None
        self.src = self.dst = None
        self.tcp = None            # {"tcp.seq": ..., ...} of the innermost TCP
        self.tcp_pos = None        # frame offset of that TCP header
        self.src_dst = (None, None)  # its IP addresses
        self.segdata = []          # (pos, size) of "TCP segment data" items
        self.records = []
        self.anomalies = []

    @property
    def payload_start(self):
        if self.tcp is None or self.tcp_pos is None:
            return None
        return self.tcp_pos + self.tcp.get("tcp.hdr_len", 0)

    def msp_start(self):
        """Frame offset where a reassembly begins in this frame: the segment
        data item that runs to the end of the payload."""
        start = self.payload_start
        if start is None:
            return None
        end = start + self.tcp.get("tcp.len", 0)
        for pos, size in self.segdata:
            if pos + size == end and pos >= start:
                return pos
        return None


def _parse_packet(elems, seen):
    """Walk one packet's elements. `seen` maps an earlier frame number to
    (relative seq, payload_start, msp_start), to place reassembled PDUs."""
    p = _Packet()
    addr = {}
    top = None           # the current top-level proto
    reasm = []           # reassembled PDUs of this frame: lists of segments
    tls_base = None      # relative seq of offset 0 of the current TLS data
    tls_reassembled = False
    rec = None
    for depth, kind, name, a in elems:
        if kind == "proto":
            if depth != 1:
                continue             # nested: the quote in an ICMP error...
            top = name
            rec = None
            if name in ("ip", "ipv6"):
                addr = {}
            elif name == "tcp":
                # the innermost TCP header wins (tunnels)
                p.tcp = {}
                p.tcp_pos = _int(a.get("pos"))
                p.src_dst = (addr.get("src"), addr.get("dst"))
                p.segdata = []
                reasm = []
            elif name == "tls" and p.tcp is not None:
                pos = _int(a.get("pos"), 0)
                tls_base, tls_reassembled = None, False
                start = p.payload_start
                if start is not None and pos >= start:
                    tls_base = p.tcp.get("tcp.seq", 0) - start
                elif reasm:
                    tls_reassembled = True
                    tls_base = _pdu_start(p, reasm.pop(0), seen)
                else:
                    p.anomalies.append("frame %s: TLS on a data source that is "
                                       "not the TCP stream; left out" % p.frame)
            continue
        if name == "num" and top == "geninfo":
            p.frame = _int(a.get("show"))
        elif top in ("ip", "ipv6") and depth == 2 and name.startswith(top + "."):
            addr[name[len(top) + 1:]] = a.get("show")
        elif top == "tcp" and depth == 2 and name in _TCP_INT and p.tcp is not None:
            p.tcp.setdefault(name, _int(a.get("show"), 0))
        elif name == "tcp.segment_data" and p.tcp is not None:
            p.segdata.append((_int(a.get("pos"), 0), _int(a.get("size"), 0)))
        elif name == "tcp.segments" and top == "fake-field-wrapper":
            reasm.append([])
        elif name == "tcp.segment" and top == "fake-field-wrapper" and reasm:
            m = _SEG_RE.search(a.get("showname", ""))
            if m:
                reasm[-1].append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
        elif top == "tls" and p.tcp is not None and tls_base is not None:
            if name == "tls.record" and depth == 2:
                rec = {"pos": _int(a.get("pos"), 0), "size": _int(a.get("size"), 0),
                       "base": tls_base, "reassembled": tls_reassembled}
                p.records.append(rec)
            elif rec is not None and depth == 3 and name.startswith("tls.record."):
                rec.setdefault(name, a.get("show"))
    if p.tcp is not None:
        src, dst = p.src_dst
        p.src = _endpoint(src, p.tcp.get("tcp.srcport"))
        p.dst = _endpoint(dst, p.tcp.get("tcp.dstport"))
    p.records = [_record(p, r) for r in p.records]
    return p


def _pdu_start(p, segs, seen):
    """Relative seq of the first byte of a PDU reassembled from `segs`
    [(frame, lo, hi)] and completed in this frame."""
    if not segs:
        p.anomalies.append("frame %s: reassembled PDU without segments" % p.frame)
        return None
    starts = []
    first_frame, first_lo, _ = segs[0]
    info = seen.get(first_frame)
    if info is not None and info[2] is not None and first_lo == 0:
        seq, payload_start, msp_start = info
        starts.append(seq + msp_start - payload_start)
    # cross-check: this frame's own part begins at its payload start
    for fr, lo, _hi in segs:
        if fr == p.frame:
            starts.append(p.tcp.get("tcp.seq", 0) - lo)
            break
    if not starts:
        p.anomalies.append("frame %s: cannot place the reassembled PDU; its "
                           "records left out" % p.frame)
        return None
    if len(set(starts)) > 1:
        p.anomalies.append("frame %s: reassembled PDU placed at seq %s by its first "
                           "segment, at %s by its last" % (p.frame, starts[0], starts[-1]))
    return starts[0]


def _record(p, r):
    version = r.get("tls.record.version")
    length = _int(r.get("tls.record.length"))
    wire = r.get("tls.record.opaque_type", r.get("tls.record.content_type"))
    inner = r.get("tls.record.content_type") if "tls.record.opaque_type" in r else None
    sslv2 = version == "0x0002" or wire is None
    size = r["size"]
    if sslv2:
        wire = None
        if length is None:          # SSLv2 encrypted data shows no length field
            length = size - 2
        header_len = size - length
    else:
        header_len = 5
    seq = r["base"] + r["pos"]
    seq_raw = None
    if "tcp.seq_raw" in p.tcp:
        seq_raw = (p.tcp["tcp.seq_raw"] + seq - p.tcp.get("tcp.seq", 0)) % (1 << 32)
    return {
        "frame": p.frame,           # where tshark reports it (reassembly done)
        "stream": p.tcp.get("tcp.stream"),
        "src": p.src,
        "dst": p.dst,
        "type": _int(wire),         # content type on the wire; None: SSLv2
        "inner_type": _int(inner),  # decrypted TLS 1.3 record: inner type
        "version": version,         # "0x0303"...; "0x0002" for SSLv2
        "length": length,           # body length from the header
        "size": size,               # bytes tshark dissected, header included
        "complete": size == header_len + (length or 0),
        "sslv2": sslv2,
        "header_len": header_len,
        "seq": seq,                 # relative seq of the first header byte
        "seq_raw": seq_raw,         # absolute seq of the first header byte
        "reassembled": r["reassembled"],   # its bytes came in several segments
    }


def tshark_record_details(path, tls_ports=(), tshark="tshark", timeout=120,
                          two_pass=True, extra_prefs=(), anomalies=None):
    """Every TLS record tshark dissects, in stream order per (stream, src).

    One dict per record: frame (where tshark reports it: where its reassembly
    completes), stream, src, dst, type (wire content type; None for SSLv2),
    inner_type (decrypted TLS 1.3 only), version, length (from the header),
    size (bytes dissected), complete, sslv2, header_len, seq and seq_raw (the
    sequence number of its first header byte, relative as tshark shows it,
    and absolute), reassembled.  Relative seq 1 is the first byte after the
    SYN or, without a SYN, the first byte captured: the record's offset in
    the side stream is seq - 1.

    If `anomalies` is a list, notes on anything odd are appended to it:
    unplaceable PDUs, records out of frame order, records reported twice,
    bytes between consecutive records that tshark did not dissect."""
    cmd = tshark_command(path, tls_ports, tshark, "tcp", two_pass, extra_prefs)
    seen = {}
    found = []
    notes = []
    for elems in _iter_packets(cmd, timeout):
        p = _parse_packet(elems, seen)
        if p.tcp is not None and p.frame is not None:
            seen[p.frame] = (p.tcp.get("tcp.seq", 0), p.payload_start, p.msp_start())
        found.extend(p.records)
        notes.extend(p.anomalies)
    groups = {}
    for i, r in enumerate(found):
        groups.setdefault((r["stream"], r["src"]), []).append((i, r))
    result = []
    for key in sorted(groups, key=lambda k: (-1 if k[0] is None else k[0], str(k[1]))):
        recs = groups[key]
        ordered = sorted(recs, key=lambda ir: (ir[1]["seq"], ir[0]))
        if ordered != recs:
            notes.append("stream %s %s: tshark reported records out of stream "
                         "order; sorted by sequence number" % key)
        prev = None
        for _, r in ordered:
            if prev is not None:
                if r["seq"] == prev["seq"]:
                    notes.append("stream %s %s: record at seq %s reported twice "
                                 "(frames %s, %s); kept once"
                                 % (key[0], key[1], r["seq"], prev["frame"], r["frame"]))
                    continue
                end = prev["seq"] + prev["header_len"] + (prev["length"] or 0)
                if r["seq"] != end:
                    notes.append("stream %s %s: %d bytes %s between the records "
                                 "reported in frames %s and %s"
                                 % (key[0], key[1], abs(r["seq"] - end),
                                    "not dissected" if r["seq"] > end else "overlap",
                                    prev["frame"], r["frame"]))
            result.append(r)
            prev = r
    if anomalies is not None:
        anomalies.extend(notes)
    return result


def tshark_records(path, tls_ports=(), tshark="tshark", timeout=120,
                   include_sslv2=False):
    """{(stream, src_endpoint): [(content_type, length), ...]} in stream order,
    for every TCP stream and direction in which tshark dissects TLS records.

    stream: tcp.stream (int); src_endpoint: "ip:port" or "[ipv6]:port" of the
    sender (innermost IP header for tunnels).  tls_ports: extra TCP ports to
    decode as TLS (-d tcp.port==P,tls).  content_type is the wire type.
    SSLv2 records only with include_sslv2, as (None, length)."""
    out = {}
    for r in tshark_record_details(path, tls_ports, tshark, timeout):
        if r["sslv2"] and not include_sslv2:
            continue
        out.setdefault((r["stream"], r["src"]), []).append((r["type"], r["length"]))
    return out


def tshark_streams(path, tshark="tshark", timeout=120, tls_ports=()):
    """{stream: (first_frame, "ipA:portA", "ipB:portB")} for every tcp.stream;
    A is the sender of the stream's first frame (innermost IP header).

    Run with the same options as tshark_records: decode-as (tls_ports) can
    change the numbering (the SOCKS dissector uses up stream numbers)."""
    fields = ("frame.number", "frame.protocols", "ip.src", "ip.dst", "ipv6.src",
              "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.stream")
    output = ["-T", "fields", "-E", "header=n", "-E", "separator=/t",
              "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        output += ["-e", f]
    cmd = tshark_command(path, tls_ports, tshark, "tcp", True, (), output)
    streams = {}
    for raw in _run_lines(cmd, timeout):
        cols = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
        if len(cols) < 9 or not cols[8]:
            continue
        stream = _int(cols[8].split(",")[0])
        if stream is None or stream in streams:
            continue
        protos = cols[1].split(":")
        if "tcp" not in protos:
            continue
        # the IP header just before the first TCP header (for a TCP header
        # quoted in an ICMP error, the quoted one)
        n = {"ip": 0, "ipv6": 0}
        last = None
        for pr in protos[:protos.index("tcp")]:
            if pr in n:
                last = (pr, n[pr])
                n[pr] += 1
        if last is None:
            continue
        srcs, dsts = (cols[2], cols[3]) if last[0] == "ip" else (cols[4], cols[5])
        srcs, dsts = srcs.split(","), dsts.split(",")
        if last[1] >= len(srcs) or last[1] >= len(dsts):
            continue
        streams[stream] = (_int(cols[0]),
                           _endpoint(srcs[last[1]], cols[6].split(",")[0]),
                           _endpoint(dsts[last[1]], cols[7].split(",")[0]))
    return streams
