"""The lab's capture side: tcpdump or dumpcap on the loopback interface, and a
plain reading of what was captured (records against segments, closes against
records) to check that a scenario really happened the way it was meant to.

The reading here is deliberately simple and independent of the analyzer's
reassembly: it only has to understand the lab's own tidy captures (every
connection from its SYN, no loss, no retransmission; it says so when that is
not the case). It uses the package's capture reader and frame decoder, so it
needs no tshark.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

from ..capture import open_capture
from ..frame import ACK, FIN, RST, SYN, decode, format_endpoint

TYPES = {20: "CCS", 21: "Alert", 22: "Handshake", 23: "AppData", 24: "Heartbeat"}


class CaptureUnavailable(Exception):
    """Capturing is not possible here; the message says what to install or run."""


class CheckFailed(Exception):
    """The capture is not the scenario it was meant to be (a timing hiccup)."""


def need(cond, what):
    if not cond:
        raise CheckFailed(what)


# ----------------------------------------------------------------------------- capturing

INSTALL = {"tcpdump": "install tcpdump (Debian/Ubuntu: apt-get install tcpdump)",
           "dumpcap": "install dumpcap (Debian/Ubuntu: apt-get install wireshark-common)"}


def _find(tool):
    """Path of an installed tool ($PCAP_TLS_SPLIT_TCPDUMP / _DUMPCAP first), or None;
    CaptureUnavailable when the variable names no executable."""
    env = f"PCAP_TLS_SPLIT_{tool.upper()}"
    if os.environ.get(env):
        path = os.environ[env]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise CaptureUnavailable(f"{tool} not found at {path} (from ${env}): {INSTALL[tool]}")
        return path
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                       if os.access(p, os.X_OK)), None)


def capture_tool(pcapng=False):
    """(tool, path) of the capturer to use: tcpdump for pcap; dumpcap for pcapng,
    or tcpdump (its pcap converted to pcapng) when dumpcap is not installed.
    CaptureUnavailable when there is none."""
    if pcapng:
        path = _find("dumpcap")
        if path:
            return "dumpcap", path
        path = _find("tcpdump")
        if path:
            return "tcpdump", path
        raise CaptureUnavailable(f"neither dumpcap nor tcpdump found: {INSTALL['dumpcap']}, or {INSTALL['tcpdump']}")
    path = _find("tcpdump")
    if path is None:
        raise CaptureUnavailable(f"tcpdump not found: {INSTALL['tcpdump']}")
    return "tcpdump", path


def pcap_to_pcapng(src, dst):
    """Rewrite a pcap as pcapng (one interface per link type, nanosecond timestamps)."""
    import struct

    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    interfaces = {}
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    with open_capture(src) as cap:
        for _, t, linktype, data, orig_len in cap.frames():
            if linktype not in interfaces:
                interfaces[linktype] = len(interfaces)
                tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
                out.append(block(1, struct.pack("<HHI", linktype, 0, 262144) + tsresol))
            ticks = round(t * 1e9)
            out.append(block(6, struct.pack("<IIIII", interfaces[linktype], ticks >> 32, ticks & 0xFFFFFFFF,
                                            len(data), orig_len) + bytes(data)))
    with open(dst, "wb") as f:
        f.write(b"".join(out))


def _not_permitted(tool, path, text):
    said = "; ".join(line.strip().strip("()") for line in text.strip().splitlines() if line.strip())
    return CaptureUnavailable(
        f"{tool} is not permitted to capture on lo ({said or 'permission denied'}): run as root, or "
        f"give it the capture capabilities: sudo setcap cap_net_raw,cap_net_admin=eip {path}")


class Capture:
    """tcpdump (pcap) or dumpcap (pcapng) on lo, filtered on one TCP port.

    ``start()`` returns once the capturer says it is capturing (plus ``settle``
    seconds); ``stop()`` waits ``drain`` seconds for the last packets, stops it
    with SIGINT and raises CheckFailed when it reports dropped packets. Both are
    idempotent; ``stop`` may be called from another thread (to end a capture in
    the middle of a transfer)."""

    def __init__(self, path, port, pcapng=False, nano=False, buffer_mib=4, settle=0.5, drain=1.0,
                 interface="lo", direction=None):
        self.path, self.port, self.pcapng, self.nano = path, port, pcapng, nano
        self.direction = direction    # "to_server": only the packets sent to the port (one-sided)
        self.buffer_mib, self.settle, self.drain, self.interface = buffer_mib, settle, drain, interface
        self.tool = None          # chosen at start
        self.lines = []
        self.ready = threading.Event()
        self.proc = None
        self.stopped = False
        self.stopped_at = None
        self._lock = threading.Lock()

    def command(self, exe):
        filt = ("tcp dst port %d" if self.direction == "to_server" else "tcp port %d") % self.port
        if self.tool == "dumpcap":
            return [exe, "-i", self.interface, "-B", str(self.buffer_mib), "-f", filt, "-w", self.path]
        # --immediate-mode: without it, the packets still in the kernel's capture
        # block when SIGINT comes (up to ~1 s of them) are lost.
        cmd = [exe, "-i", self.interface, "-U", "--immediate-mode", "-B", str(self.buffer_mib * 1024),
               "-w", self.raw_path]
        if self.nano:
            cmd += ["--time-stamp-precision", "nano"]
        return cmd + [filt]

    @property
    def raw_path(self):
        """What tcpdump writes: the file itself, or a pcap to convert when pcapng is wanted."""
        return self.path + ".tcpdump.pcap" if self.pcapng and self.tool == "tcpdump" else self.path

    def start(self):
        self.tool, exe = capture_tool(self.pcapng)
        for p in {self.path, self.raw_path}:
            if os.path.exists(p):
                os.unlink(p)
        marker = "Capturing on" if self.tool == "dumpcap" else "listening on"
        try:
            self.proc = subprocess.Popen(self.command(exe), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except PermissionError as e:
            raise _not_permitted(self.tool, exe, str(e)) from None
        except OSError as e:
            raise CaptureUnavailable(f"cannot run {exe}: {e}") from None

        capturing = []

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                if marker in line:
                    capturing.append(True)
                    self.ready.set()
            self.ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        if not self.ready.wait(15) or not capturing or self.proc.poll() is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.thread.join(5)
            text = "\n".join(self.lines)
            if re.search(r"permission|not permitted|EPERM|privilege", text, re.I):
                raise _not_permitted(self.tool, exe, text)
            if re.search(r"no such device|doesn't exist|no suitable device", text, re.I):
                raise CaptureUnavailable(f"{self.tool} cannot open {self.interface}: {text.strip()}")
            raise CaptureUnavailable(f"{self.tool} did not start: {text.strip() or 'no output'}")
        # the marker comes once the device is open and the filter set; a moment more anyway
        time.sleep(self.settle)
        return self

    def stop(self, drain=None):
        with self._lock:
            if self.stopped or self.proc is None:
                return
            self.stopped = True
            time.sleep(self.drain if drain is None else drain)    # let the last packets reach the file
            self.stopped_at = time.time()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.thread.join(5)
        if self.raw_path != self.path and os.path.exists(self.raw_path):
            pcap_to_pcapng(self.raw_path, self.path)
            os.unlink(self.raw_path)
        try:                  # tcpdump drops privileges: give the file to the directory's owner
            st = os.stat(os.path.dirname(os.path.abspath(self.path)))
            if os.geteuid() == 0:
                os.chown(self.path, st.st_uid, st.st_gid)
            os.chmod(self.path, 0o644)
        except OSError:
            pass
        text = "\n".join(self.lines)
        drops = re.findall(r"(\d+) packets dropped by kernel", text) + \
            re.findall(r"received/dropped on interface .*?: \d+/(\d+)", text)
        if any(int(d) for d in drops):
            raise CheckFailed(f"{self.tool} dropped packets: " + " ".join(self.lines[-3:]))
        if not os.path.exists(self.path):
            raise CheckFailed(f"{self.tool} wrote no file: " + " ".join(self.lines[-3:]))

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop(drain=0.2)
            except CheckFailed:
                pass
        return False


# ----------------------------------------------------------------------------- reading it back

class Side:
    def __init__(self, addr, port):
        self.addr, self.port = addr, port
        self.endpoint = format_endpoint(addr, port)
        self.isn = None
        self.segments = []      # (frame, time, offset, length)
        self.data = bytearray()
        self.close = None       # dict(frame, time, kind, ack, offset)
        self.closes = []
        self.records = []
        self.overlaps = 0
        self.gaps = 0


class Conn:
    def __init__(self, stream):
        self.stream = stream
        self.sides = {}         # 'client' / 'server' -> Side
        self.frames = []        # (frame, time, who, flags, offset, length, ack)
        self.syn = False
        self.first_closer = None
        self.reach = None
        self.ended = False

    @property
    def client(self):
        return self.sides["client"]

    @property
    def server(self):
        return self.sides["server"]

    def peer(self, who):
        return self.sides["server" if who == "client" else "client"]


def _flags(f):
    return ("S" if f & SYN else "") + ("F" if f & FIN else "") + ("R" if f & RST else "") + ("A" if f & ACK else "")


def read_layout(path):
    """The TCP connections of a capture, reassembled, with their TLS records and
    where each side's first close falls in the peer's records. A list of Conn,
    in order of first packet (Wireshark's tcp.stream)."""
    conns, by_tuple = [], {}
    with open_capture(path) as cap:
        for frame, t, linktype, data, orig_len in cap.frames():
            seg = decode(linktype, data, orig_len)
            if seg is None:
                continue
            src, dst, sport, dport, seq, ack, flags, _win, payload, _missing = seg
            key = frozenset(((bytes(src), sport), (bytes(dst), dport)))
            c = by_tuple.get(key)
            if c is None or (c.ended and flags & SYN and not flags & ACK):
                c = Conn(len(conns))
                conns.append(c)
                by_tuple[key] = c
                if flags & SYN and not flags & ACK:
                    c.sides["client"], c.sides["server"] = Side(src, sport), Side(dst, dport)
                    c.syn = True
                elif flags & SYN:
                    c.sides["client"], c.sides["server"] = Side(dst, dport), Side(src, sport)
                    c.syn = True
                else:      # the lab listens below the ephemeral range: the higher port is the client
                    lo, hi = sorted(((sport, src), (dport, dst)))
                    c.sides["client"], c.sides["server"] = Side(hi[1], hi[0]), Side(lo[1], lo[0])
            who = "client" if (sport == c.client.port and bytes(src) == bytes(c.client.addr)) else "server"
            s, p = c.sides[who], c.peer(who)
            if flags & SYN:
                s.isn = seq
            if s.isn is None:
                s.isn = (seq - 1) & 0xFFFFFFFF
            off = (seq - s.isn - 1) & 0xFFFFFFFF
            n = len(payload)
            rel_ack = None
            if flags & ACK and p.isn is not None:
                rel_ack = (ack - p.isn - 1) & 0xFFFFFFFF
            c.frames.append((frame, t, who, _flags(flags), off, n, rel_ack))
            if n and not flags & SYN:
                payload = bytes(payload)
                if off < len(s.data):                       # retransmission / overlap
                    s.overlaps += 1
                    payload = payload[len(s.data) - off:]
                    off = len(s.data)
                if off > len(s.data):
                    s.gaps += 1
                    off = len(s.data)
                if payload:
                    s.segments.append((frame, t, off, len(payload)))
                    s.data += payload
            if flags & (FIN | RST):
                kind = "rst" if flags & RST else "fin"
                if s.close is None:
                    s.close = dict(frame=frame, time=t, kind=kind, ack=rel_ack, offset=off + n)
                s.closes.append(dict(frame=frame, kind=kind))
                if flags & RST or (c.client.close and c.server.close):
                    c.ended = True
    for c in conns:
        for s in c.sides.values():
            parse_records(s)
        locate_close(c)
    return conns


def parse_records(s):
    d, off, idx = s.data, 0, 0
    while off + 5 <= len(d):
        typ, major, ln = d[off], d[off + 1], int.from_bytes(d[off + 3:off + 5], "big")
        if typ not in range(20, 25) or major != 3 or ln > 2 ** 14 + 2048:
            break
        end = off + 5 + ln
        segs = [sg for sg in s.segments if sg[2] < min(end, len(d)) and sg[2] + sg[3] > off]
        hsegs = [sg for sg in s.segments if sg[2] < off + 5 and sg[2] + sg[3] > off]
        s.records.append(dict(index=idx, offset=off, type=typ, version="%d.%d" % (major, d[off + 2]),
                              length=ln, end=end, complete=end <= len(d),
                              frames=[sg[0] for sg in segs], header_frames=[sg[0] for sg in hsegs]))
        off, idx = end, idx + 1
    if 0 < len(d) - off < 5:      # the stream ends inside a header
        s.records.append(dict(index=idx, offset=off, type=d[off], version="?", length=None,
                              end=None, complete=False, frames=[], header_frames=[]))
    for r in s.records:
        r["straddling"] = len(r["frames"]) > 1
        r["header_split"] = len(r["header_frames"]) > 1
        r["coalesced"] = any(o is not r and set(o["frames"]) & set(r["frames"]) for o in s.records)


def record_stats(s):
    return dict(total=len(s.records),
                straddling=sum(r["straddling"] for r in s.records),
                header_split=sum(r["header_split"] for r in s.records),
                coalesced=sum(r["coalesced"] for r in s.records),
                incomplete=sum(not r["complete"] for r in s.records))


def locate_close(c):
    """First closer, and where its reach falls in the peer's records."""
    closes = [(s.close["frame"], who) for who, s in c.sides.items() if s.close]
    c.first_closer = None
    c.reach = None
    if not closes:
        return
    frame, who = min(closes)
    c.first_closer = who
    me, peer = c.sides[who], c.peer(who)
    reach = me.close["ack"]
    if reach is None:            # no ACK on the close: what was captured of the peer before it
        reach = sum(sg[3] for sg in peer.segments if sg[0] < frame)
    reach = min(reach, len(peer.data))
    pos = None
    for r in peer.records:
        if r["offset"] < reach < (r["end"] or 10 ** 12):
            pos = dict(where="inside", record=r["index"], received=reach - r["offset"],
                       length=(r["length"] or 0) + 5)
            break
    if pos is None:
        pos = dict(where="boundary",
                   records_before=sum(1 for r in peer.records if r["end"] and r["end"] <= reach))
    pending = [r for r in peer.records if r["offset"] >= reach]
    pos["pending"] = [dict(index=r["index"], type=r["type"], length=r["length"]) for r in pending]
    last_seg = max((sg for sg in peer.segments if sg[0] < frame), default=None, key=lambda sg: sg[0])
    pos["aligned"] = bool(last_seg) and any(r["end"] == last_seg[2] + last_seg[3] for r in peer.records)
    pos["reach"] = reach
    c.reach = pos


def layout_json(c):
    """What expected.json keeps of a connection's layout."""
    d = {"client": record_stats(c.client), "server": record_stats(c.server)}
    if c.first_closer:
        cl = c.sides[c.first_closer].close
        d["close"] = dict(first_closer=c.first_closer, kind=cl["kind"], frame=cl["frame"],
                          reach=c.reach["reach"], where=c.reach["where"],
                          pending_records=len(c.reach["pending"]))
        if c.reach["where"] == "inside":
            d["close"]["inside_record"] = c.reach["record"]
            d["close"]["bytes_received"] = c.reach["received"]
    return d


def check_tidy(conns, from_syn=True):
    """Every connection from its SYN, nothing lost, nothing retransmitted."""
    need(conns, "no TCP connection captured")
    for c in conns:
        if from_syn:
            need(c.syn and c.frames[0][3] == "S", f"stream {c.stream} captured from its SYN")
        for who, s in c.sides.items():
            need(not s.gaps, f"stream {c.stream}: bytes of the {who} missing from the capture")
            need(not s.overlaps, f"stream {c.stream}: {who} retransmitted {s.overlaps} segment(s)")
        fins = [f for f in c.frames if "F" in f[3]]
        need(len(fins) == len({f[2] for f in fins}), f"stream {c.stream}: a FIN was retransmitted")


def describe(path, conns, out, info=None):
    """A frame-by-frame table of the capture: records per segment, closes."""
    print("== %s: %d TCP connection(s)" % (os.path.basename(path), len(conns)), file=out)
    info = info or {}
    for c in conns:
        print("-- stream %d  client %s  server %s" % (c.stream, c.client.endpoint, c.server.endpoint), file=out)
        t0 = c.frames[0][1]
        for frame, t, who, flags, off, n, ack in c.frames:
            s = c.sides[who]
            if n == 0 and flags == "A":
                continue
            recs = []
            for r in s.records:
                if frame in r["frames"]:
                    part = ""
                    if r["straddling"]:
                        part = " part %d/%d" % (r["frames"].index(frame) + 1, len(r["frames"]))
                    if r["header_split"] and frame in r["header_frames"]:
                        part += " HEADER-SPLIT"
                    if not r["complete"]:
                        part += " INCOMPLETE"
                    recs.append("%s#%d %s len=%s%s" % (who[0].upper(), r["index"], TYPES.get(r["type"], r["type"]),
                                                      r["length"], part))
            if n and info.get(frame):
                recs.append("[tshark: %s]" % info[frame][:90])
            print("  f%-4d %8.3f %s %-4s seq=%-7s len=%-6d ack=%-7s %s" % (
                frame, t - t0, "C>S" if who == "client" else "S>C", flags, "-" if "S" in flags else off, n,
                "-" if ack is None else ack, "; ".join(recs)), file=out)
        for who in ("client", "server"):
            print("   %s records: %s" % (who, record_stats(c.sides[who])), file=out)
        if c.first_closer:
            cl = c.sides[c.first_closer].close
            print("   first closer: %s %s at f%d, reach %s" % (c.first_closer, cl["kind"], cl["frame"], c.reach),
                  file=out)
