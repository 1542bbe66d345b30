"""The lab's TLS ends: a server and clients that decide which bytes go into which TCP send.

Both ends drive an ``ssl.SSLObject`` over two ``ssl.MemoryBIO``s and write the
TLS bytes to the socket themselves, with TCP_NODELAY and one ``sendall`` per
intended TCP segment (on an idle loopback link with a 64 KiB MTU a send below
64 KiB is exactly one segment; on a real link the kernel still cuts sends larger
than the path MSS). So the record/segment layout and the timing of every send
and close are exactly the ones asked for.

``ServerPlan`` says how the server answers (records, cuts, pauses, how it
closes); ``serve_connection`` runs one connection that way and logs each event
through a callback. The lab's command line (``cli.py``) and its scenarios
(``scenarios.py``) are built on these. Standard library only.
"""

import atexit
import dataclasses
import errno
import http
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time

from . import cert as lab_cert

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# A close step this long after an alert or a Finished: Linux delays its ACK of
# a FIN, and with two unacknowledged packets (alert + FIN back to back) its tail
# loss probe retransmits the FIN after a few ms. 50 ms apart, neither happens.
CLOSE_PAUSE = 0.05
# After the peer's FIN, wait this long before our own close: a peer that closed
# without reading everything may still answer our last data with RST, and then
# our close sends nothing more.
FIN_ANSWER_PAUSE = 0.10


TCP_CLOSE = 7


def tcp_state(sock):
    """The kernel's TCP state of a socket (Linux TCP_INFO), None when unknown."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except (OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|sec|m|min)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0, "min": 60.0}


def parse_duration(text):
    """'300ms' -> 0.3, '1.5s' -> 1.5, '1m' -> 60.0, '0' -> 0.0; a number (int, float) is
    seconds. A bare number in text other than 0 is refused (ValueError): '300' could be
    300 ms or 300 s, so it needs its unit."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (say e.g. 300ms, 1.5s, 2m)")
    if m.group(2) is None and float(m.group(1)) != 0:
        raise ValueError(f"{text.strip()!r} needs a unit: {text.strip()}ms or {text.strip()}s?")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_durations(text):
    """'0,300ms' -> [0.0, 0.3]: one duration per gap, the last one repeats."""
    return [parse_duration(part) for part in str(text).split(",")]


def format_duration(seconds):
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


# ----------------------------------------------------------------------------- certificate

_CERT_DIR = None
_CERT_LOCK = threading.Lock()


def bundled_cert_files():
    """(cert, key) paths of the bundled test-only pair, written once per process
    to a private temporary directory (ssl needs files) and removed at exit."""
    with _CERT_LOCK:
        return _bundled_cert_files()


def _bundled_cert_files():
    global _CERT_DIR
    if _CERT_DIR is None or not os.path.isdir(_CERT_DIR):
        _CERT_DIR = tempfile.mkdtemp(prefix="pcap-tls-split-lab-")
        atexit.register(shutil.rmtree, _CERT_DIR, True)
        for name, text in (("cert.pem", lab_cert.CERT_PEM), ("key.pem", lab_cert.KEY_PEM)):
            fd = os.open(os.path.join(_CERT_DIR, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
    return os.path.join(_CERT_DIR, "cert.pem"), os.path.join(_CERT_DIR, "key.pem")


def server_context(version=None, cert=None, key=None, keylog=None):
    """version: '1.2', '1.3' or None (either)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert is None:
        cert, key = bundled_cert_files()
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    if keylog:
        ctx.keylog_filename = keylog
    return ctx


def client_context(version=None, keylog=None, cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.load_verify_locations(cadata=lab_cert.CERT_PEM)
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    if keylog:
        ctx.keylog_filename = keylog
    return ctx


# ----------------------------------------------------------------------------- a TLS end

class End:
    """One end of a connection: a socket, and an SSLObject between two memory BIOs."""

    def __init__(self, sock, ctx, server_side, log=None):
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=None if server_side else "localhost")
        self.plain = b""          # decrypted, not yet consumed
        self.got_close_notify = False
        self.eof = False          # the peer's FIN was read
        self.reset = False        # the peer's RST was seen
        self.t0 = time.monotonic()
        self.log = log or (lambda msg: None)

    def elapsed(self):
        return time.monotonic() - self.t0

    # -- raw TCP
    def send(self, data):
        """One sendall: one TCP segment (below the MSS, TCP_NODELAY, idle link)."""
        if data:
            self.sock.sendall(data)

    def take(self):
        """The TLS bytes produced so far and not sent yet."""
        return self.out.read()

    def flush(self):
        self.send(self.take())

    def recv(self, timeout=5.0):
        """bytes; b'' at EOF; None on timeout. ConnectionError on RST."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(262144)
        except socket.timeout:
            return None
        except ConnectionError:
            self.reset = True
            raise
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass
        if not d:
            self.eof = True
        else:
            self.inc.write(d)
        return d

    # -- TLS
    def records(self, plaintext):
        """Encrypt: one record per write of up to 16 KiB. Returns the TLS bytes."""
        self.obj.write(plaintext)
        return self.take()

    def handshake(self, timeout=10.0):
        """Run the handshake, sending each flight as one send. What the last step
        produced (TLS 1.2 client: nothing; TLS 1.3 client: its Finished; TLS 1.2
        server: ticket + CCS + Finished; TLS 1.3 server: session tickets) stays in
        the outgoing BIO: the caller decides when it goes."""
        while True:
            try:
                self.obj.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.flush()
                d = self.recv(timeout)
                if not d:
                    raise ConnectionError("the peer went away during the handshake"
                                          if d == b"" else "no handshake message for %gs" % timeout)

    def drain(self):
        """Decrypt whatever is buffered into self.plain."""
        while not self.got_close_notify:
            try:
                d = self.obj.read(262144)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                d = b""
            if not d:
                self.got_close_notify = True
                return
            self.plain += d

    def close_notify(self):
        """Queue our close_notify (not sent)."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass

    def abort(self):
        """Close with RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.sock.close()

    def version(self):
        try:
            return self.obj.version()
        except Exception:
            return None


# ----------------------------------------------------------------------------- HTTP/1.1

def http_complete(buf):
    """Length of the first complete HTTP message in buf (by Content-Length), or None."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head = buf[:i].decode("latin-1").split("\r\n")
    n = 0
    for h in head[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            try:
                n = int(v)
            except ValueError:
                n = 0
    total = i + 4 + n
    return total if len(buf) >= total else None


def first_line(msg):
    return msg.split(b"\r\n", 1)[0].decode("latin-1", "replace")[:100]


def request(path="/", method="GET", body=b"", agent="pcap-tls-split-lab"):
    h = "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: %s\r\n" % (method, path, agent)
    if body or method == "POST":
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode() + b"\r\n" + body


def status_line(status):
    """'401' -> '401 Unauthorized'; '401 Nope' stays."""
    status = str(status).strip()
    code, _, reason = status.partition(" ")
    if not code.isdigit() or not 100 <= int(code) <= 999:
        raise ValueError(f"not an HTTP status: {status!r} (say e.g. 401 or '401 Unauthorized')")
    if not reason:
        try:
            reason = http.HTTPStatus(int(code)).phrase
        except ValueError:
            reason = "Status"
    return f"{code} {reason}"


def response_head(status, length, ctype="text/plain", extra=""):
    return ("HTTP/1.1 %s\r\nServer: pcap-tls-split-lab\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (status, ctype, length, extra)).encode()


def filler(n, seed=b"pcap-tls-split lab body. "):
    return (seed * (n // len(seed) + 1))[:n]


def default_body(status):
    if status.startswith("401"):
        return b"<html><body><h1>401 Unauthorized</h1>Missing or bad credentials.</body></html>\n"
    return ("<html><body><h1>%s</h1></body></html>\n" % status).encode()


# ----------------------------------------------------------------------------- cuts

_POS = re.compile(r"^(\d+)(?:\+(\d+|half))?$")


def parse_position(text):
    """A place in a response's TLS bytes: 'N' = where record N (1-based) starts,
    'N+B' = B bytes into record N (its 5-byte header included: N+1..N+4 fall
    inside the header), 'N+half' = the middle of record N, '@B' = B bytes from
    the start of the response."""
    text = text.strip()
    if text.startswith("@") and text[1:].isdigit():
        return ("abs", int(text[1:]))
    m = _POS.match(text)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"not a position: {text!r} (say N, N+BYTES, N+half or @BYTES; records count from 1)")
    return ("rec", int(m.group(1)), m.group(2) or "0")


def parse_cut(text):
    """--cut: comma-separated items: 'records' (a send per record), 'none' (the
    response in one send), 'every:BYTES', or positions (see parse_position)."""
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if part in ("records", "none"):
            items.append((part,))
        elif part.startswith("every:") and part[6:].isdigit() and int(part[6:]) > 0:
            items.append(("every", int(part[6:])))
        else:
            try:
                items.append(parse_position(part))
            except ValueError:
                raise ValueError(f"not a cut: {part!r} (say records, none, every:BYTES, or positions "
                                 "N, N+BYTES, N+half, @BYTES; comma-separated)") from None
    return items


def record_bounds(data):
    """(offset, total length) of every TLS record in data."""
    out, off = [], 0
    while off + 5 <= len(data):
        n = 5 + int.from_bytes(data[off + 3:off + 5], "big")
        out.append((off, n))
        off += n
    return out


def resolve_position(pos, bounds, total):
    """Byte offset of a parsed position, or None when the response has no such record."""
    if pos[0] == "abs":
        return min(pos[1], total)
    _, n, into = pos
    if n > len(bounds):
        return None
    off, length = bounds[n - 1]
    return off + (length // 2 if into == "half" else min(int(into), length))


def cut_points(items, bounds, total):
    """Sorted offsets (0 < o < total) where the response's bytes are cut into sends."""
    points = set()
    for item in items:
        if item[0] == "records":
            points |= {off for off, _ in bounds}
        elif item[0] == "every":
            points |= set(range(item[1], total, item[1]))
        elif item[0] in ("rec", "abs"):
            p = resolve_position(item, bounds, total)
            if p is not None:
                points.add(p)
    return sorted(p for p in points if 0 < p < total)


def describe_span(start, end, bounds):
    """What bytes start..end of a response are, in records: 'record 1 (183 B)',
    'records 1-2', 'record 2 bytes 0-1499 of 4029'."""
    parts = []
    for i, (off, n) in enumerate(bounds, 1):
        a, b = max(start, off), min(end, off + n)
        if a >= b:
            continue
        if a == off and b == off + n:
            parts.append((i, None))
        else:
            parts.append((i, "record %d bytes %d-%d of %d%s" % (i, a - off, b - off - 1, n,
                                                                  " (inside its header)" if b - off < 5 else "")))
    whole = [i for i, p in parts if p is None]
    out = []
    if whole:
        out.append("record %d" % whole[0] if len(whole) == 1 else "records %d-%d" % (whole[0], whole[-1]))
    out += [p for _, p in parts if p is not None]
    return " + ".join(out) if out else "nothing"


# ----------------------------------------------------------------------------- the server

@dataclasses.dataclass
class ServerPlan:
    """How the lab server answers each request (see ``lab serve --help``)."""

    status: str = "200 OK"
    body: bytes = None                # None: a small HTML page naming the status
    records: int = 2                  # the response in this many records: the HTTP head, then the body
    record_size: int = None           # or: body records of at most this many bytes
    cut: list = dataclasses.field(default_factory=lambda: [("records",)])
    pauses: list = dataclasses.field(default_factory=lambda: [0.0])   # between sends; the last repeats
    delay: float = 0.0                # before the first send of a response
    close: str = "keep"               # keep | fin | fast | rst: who closes after a response, and how
    close_notify: bool = True         # a close_notify before the server's own close
    close_after: float = 0.0          # wait after the response before closing (fin, rst)
    after_close: str = "read"         # read: keep reading until the peer's FIN; drop: close the socket
    on_peer_fin: str = "fin"          # fin: finish what it is sending, then FIN; rst: abort at once
    truncate: tuple = None            # stop the response at this position, then close without alert
    ticket_delay: float = 0.0         # TLS 1.3: hold the session tickets this long
    idle_timeout: float = 30.0        # waiting for a request or for the peer's close
    extra_headers: str = ""
    stop_capture_after_send: int = None   # lab only: the capture is stopped after send N (1-based)

    def response(self):
        """The response's plaintext records."""
        status = status_line(self.status)
        body = default_body(status) if self.body is None else self.body
        extra = self.extra_headers
        if status.startswith("401") and "www-authenticate" not in extra.lower():
            extra += 'WWW-Authenticate: Basic realm="device"\r\n'
        if self.close != "keep" and "connection:" not in extra.lower():
            extra += "Connection: close\r\n"
        ctype = "text/html" if body.lstrip().startswith(b"<") else "text/plain"
        head = response_head(status, len(body), ctype, extra)
        if self.record_size:
            return [head] + [body[i:i + self.record_size] for i in range(0, len(body), self.record_size)]
        if self.records <= 1 or not body:
            return [head + body]
        n = self.records - 1
        size = -(-len(body) // n)
        parts = [body[i:i + size] for i in range(0, len(body), size)]
        return [head] + parts

    def pause(self, i):
        """The pause before send i+1 (i >= 1)."""
        return self.pauses[min(i - 1, len(self.pauses) - 1)] if self.pauses else 0.0

    def summary(self):
        def show(c):
            if c[0] == "every":
                return "every:%d" % c[1]
            if c[0] == "abs":
                return "@%d" % c[1]
            if c[0] == "rec":
                return "%d" % c[1] if c[2] == "0" else "%d+%s" % c[1:]
            return c[0]
        cut = ",".join(show(c) for c in self.cut)
        pauses = ",".join(format_duration(p) for p in self.pauses)
        return (f"status {status_line(self.status)!r}, {len(self.response())} record(s), cut {cut}, "
                f"pause {pauses}, delay {format_duration(self.delay)}, close {self.close}"
                f"{'' if self.close_notify else ' (no close_notify)'}")


class _Ended(Exception):
    """The connection is over (how, in the message)."""


def _wait(end, seconds, plan):
    """Sleep; with on_peer_fin=rst, watch for the peer's FIN or RST meanwhile."""
    if seconds <= 0:
        return None
    if plan.on_peer_fin != "rst":
        time.sleep(seconds)
        return None
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or end.eof:
            break
        try:
            d = end.recv(left)
        except ConnectionError:
            return "reset"
        if d == b"":
            return "fin"
        if d is None:
            break
    return "fin" if end.eof else None


def next_request(end, timeout):
    """('request', bytes) | ('close_notify'|'fin'|'reset'|'timeout', None)."""
    while True:
        try:
            end.drain()
        except ssl.SSLError as e:
            return "tls_error", str(e)
        n = http_complete(end.plain)
        if n is not None:
            msg, end.plain = end.plain[:n], end.plain[n:]
            return "request", msg
        if end.got_close_notify:
            return "close_notify", None
        if end.eof:
            return "fin", None
        try:
            d = end.recv(timeout)
        except ConnectionError:
            return "reset", None
        if d is None:
            return "timeout", None


def _send(end, data, what, log):
    try:
        end.send(data)
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
        log(f"send failed ({name}: {e.strerror or e}): {what} not sent; the peer had reset the connection")
        end.reset = True
        raise _Ended("reset by the peer before the response was complete")
    log(f"sent {len(data)} B: {what}")


def serve_connection(end, plan, log, ctl=None):
    """Run one accepted connection the plan's way. ``log(msg)`` gets one line per
    event. Returns a one-line account of how it ended."""
    how = None
    responses = 0
    try:
        try:
            end.handshake(timeout=plan.idle_timeout)
        except (ConnectionError, OSError, ssl.SSLError) as e:
            log(f"handshake failed: {e}")
            raise _Ended("during the handshake: " + str(e)) from None
        cipher = end.obj.cipher()
        log(f"handshake done: {end.version()} {cipher[0] if cipher else ''}")
        rest = end.take()
        if rest:
            what = "session tickets" if end.version() == "TLSv1.3" else "last handshake flight"
            if plan.ticket_delay and end.version() == "TLSv1.3":
                log(f"holding the {what} {format_duration(plan.ticket_delay)}")
                time.sleep(plan.ticket_delay)
            _send(end, rest, what, log)
        while True:
            kind, msg = next_request(end, plan.idle_timeout)
            if kind != "request":
                how = peer_ended(end, kind, plan, log, responses)
                return how
            log(f"request: {first_line(msg)} ({len(msg)} B)")
            _respond(end, plan, log, ctl)
            responses += 1
            if plan.truncate is not None or plan.close != "keep":
                how = _close_first(end, plan, log)
                return how
    except _Ended as e:
        how = str(e)
        return how
    finally:
        try:
            end.sock.close()
        except OSError:
            pass
        log(f"ended: {how} ({responses} response(s) sent)")


def _respond(end, plan, log, ctl):
    recs = [end.records(p) for p in plan.response()]
    data = b"".join(recs)
    bounds = record_bounds(data)
    stop = len(data)
    if plan.truncate is not None:
        p = resolve_position(plan.truncate, bounds, len(data))
        stop = len(data) if p is None else p
    points = [p for p in cut_points(plan.cut, bounds, len(data)) if p < stop]
    edges = [0] + points + [stop]
    sends = [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
    tail = b""
    if plan.close == "fast" and plan.truncate is None:
        if plan.close_notify:
            end.close_notify()
            tail = end.take()
    if plan.delay:
        log(f"waiting {format_duration(plan.delay)} before answering")
        seen = _wait(end, plan.delay, plan)
        if seen:
            _abort_on_peer_close(end, seen, log, "before its response")
    for i, (a, b) in enumerate(sends):
        if i:
            seen = _wait(end, plan.pause(i), plan)
            if seen:
                _abort_on_peer_close(end, seen, log, f"after {i} of {len(sends)} sends")
        what = f"send {i + 1}/{len(sends)}: " + describe_span(a, b, bounds)
        if i == len(sends) - 1 and plan.close == "fast" and plan.truncate is None:
            what += " + close_notify" if tail else ""
            end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            try:
                _send(end, data[a:b] + tail, what + " + FIN (one segment)", log)
                end.sock.shutdown(socket.SHUT_WR)
            finally:
                try:
                    end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
                except OSError:
                    pass
        else:
            _send(end, data[a:b], what, log)
        if ctl is not None and plan.stop_capture_after_send == i + 1:
            ctl.stop_capture()
    if stop < len(data):
        log(f"stopped the response at byte {stop} of {len(data)} (inside "
            f"{describe_span(stop, stop + 1, bounds).split(' bytes')[0]})")


def _abort_on_peer_close(end, seen, log, when):
    if seen == "reset":
        raise _Ended(f"the peer reset the connection {when}")
    log(f"peer FIN {when}: aborting (RST)")
    end.abort()
    raise _Ended(f"the peer closed first (FIN) {when}; answered with RST")


def peer_ended(end, kind, plan, log, responses):
    """The peer closed (or went quiet) while we waited for a request."""
    if kind == "reset":
        log("peer RST")
        return "the peer reset the connection"
    if kind == "tls_error":
        log("TLS error from the peer's bytes: closing")
        end.sock.close()
        return "TLS error"
    if kind == "timeout":
        log(f"no request for {format_duration(plan.idle_timeout)}: closing")
        if plan.close_notify:
            end.close_notify()
            _send_quiet(end, end.take(), "close_notify", log)
            time.sleep(CLOSE_PAUSE)
        end.sock.close()
        log("sent FIN")
        return "idle timeout; the server closed first"
    if kind == "close_notify":
        log("peer close_notify")
        if plan.close_notify:
            end.close_notify()
            _send_quiet(end, end.take(), "close_notify (answer)", log)
        peer = _wait_peer_fin(end, plan, log)
        if peer == "fin":
            time.sleep(FIN_ANSWER_PAUSE)
            if plan.on_peer_fin == "rst":
                end.abort()
                log("answered the FIN with RST")
                return "the peer closed first (close_notify, FIN); answered with RST"
            if _close(end, log):
                return "clean: the peer closed first (close_notify, FIN)"
            return "the peer closed first (close_notify, FIN), then reset"
        return f"the peer sent close_notify, then {peer}"
    # a FIN without close_notify
    log("peer FIN (no close_notify)")
    time.sleep(FIN_ANSWER_PAUSE)
    if plan.on_peer_fin == "rst":
        end.abort()
        log("answered the FIN with RST")
        return "the peer closed first (FIN, no close_notify); answered with RST"
    if _close(end, log, " (no close_notify)"):
        return "the peer closed first (FIN, no close_notify)"
    return "the peer closed first (FIN, no close_notify), then reset on our data"


def _close(end, log, what=""):
    """Close the socket; False (and says so) when a RST had come meanwhile, so nothing was sent."""
    if tcp_state(end.sock) == TCP_CLOSE:
        end.reset = True          # data of ours reached the peer's closed socket
    end.sock.close()
    if end.reset:
        log("closed: the peer had reset the connection meanwhile, nothing sent")
        return False
    log("sent FIN" + what)
    return True


def _send_quiet(end, data, what, log):
    try:
        end.send(data)
        if data:
            log(f"sent {len(data)} B: {what}")
    except OSError as e:
        log(f"send failed ({e.strerror or e}): {what} not sent")
        end.reset = True


def _wait_peer_fin(end, plan, log):
    deadline = time.monotonic() + plan.idle_timeout
    while not end.eof:
        left = deadline - time.monotonic()
        if left <= 0:
            return "nothing more (timeout)"
        try:
            d = end.recv(left)
        except ConnectionError:
            log("peer RST")
            return "RST"
        if d is None:
            return "nothing more (timeout)"
    log("peer FIN")
    return "fin"


def _close_first(end, plan, log):
    """The server closes after its response."""
    mode = plan.close if plan.truncate is None else ("fin" if plan.close in ("keep", "fast") else plan.close)
    if mode == "fast":
        log("sent FIN with the last data" + (" and close_notify" if plan.close_notify else ""))
    else:
        if plan.close_after:
            log(f"waiting {format_duration(plan.close_after)} before closing")
            seen = _wait(end, plan.close_after, plan)
            if seen:
                _abort_on_peer_close(end, seen, log, "before the server's close")
        if mode == "rst":
            end.abort()
            log("sent RST (SO_LINGER 0)")
            return "the server closed first with RST"
        if plan.close_notify and plan.truncate is None:
            end.close_notify()
            _send_quiet(end, end.take(), "close_notify", log)
            time.sleep(CLOSE_PAUSE)
        if plan.after_close == "drop":
            end.sock.close()
            log("sent FIN (socket closed: anything arriving now is answered with RST)")
            return "the server closed first (FIN)" + ("" if plan.close_notify and plan.truncate is None
                                                     else ", no close_notify")
        try:
            end.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise _Ended(f"could not close: {e}") from None
        log("sent FIN" + ("" if plan.close_notify and plan.truncate is None else " (no close_notify)"))
    if plan.after_close == "drop":
        end.sock.close()
        return "the server closed first (FIN with its last data)"
    # keep reading until the peer's FIN
    while True:
        kind, msg = next_request(end, plan.idle_timeout)
        if kind == "request":
            log(f"request after our FIN, ignored: {first_line(msg)}")
            continue
        if kind == "close_notify":
            log("peer close_notify")
            peer = _wait_peer_fin(end, plan, log)
            end.sock.close()
            return f"the server closed first; the peer answered with close_notify, then {peer}"
        if kind == "fin":
            log("peer FIN (no close_notify)")
            end.sock.close()
            return "the server closed first; the peer answered with FIN (no close_notify)"
        if kind == "reset":
            log("peer RST")
            return "the server closed first; the peer answered with RST"
        if kind == "tls_error":
            end.sock.close()
            return "the server closed first; then a TLS error"
        return "the server closed first; the peer never answered (timeout)"


# ----------------------------------------------------------------------------- client helpers

def read_message(end, timeout=5.0):
    """Healthy reader: read until one whole HTTP message (Content-Length) is in, or
    the peer closed. Returns the message (possibly incomplete)."""
    while True:
        end.drain()
        n = http_complete(end.plain)
        if n is not None:
            msg, end.plain = end.plain[:n], end.plain[n:]
            return msg
        if end.got_close_notify or end.eof:
            msg, end.plain = end.plain, b""
            return msg
        try:
            d = end.recv(timeout)
        except ConnectionError:
            msg, end.plain = end.plain, b""
            return msg
        if d is None:
            raise TimeoutError("no data for %gs" % timeout)


def read_until_idle(end, idle=0.1, first_timeout=5.0):
    """The field bug: read until the socket has been quiet for ``idle`` seconds
    after some data came, and take that momentary "no more data" for the end.
    Returns (message, records) with what was decrypted."""
    got = False
    while True:
        try:
            d = end.recv(idle if got else first_timeout)
        except ConnectionError:
            break
        if d is None:
            if got:
                break
            raise TimeoutError("no response")
        if d == b"":
            break
        got = True
    end.drain()
    msg, end.plain = end.plain, b""
    return msg


def clean_close_first(end):
    """Healthy closer: close_notify, wait for the peer's close_notify, then FIN.
    The pauses keep our alert and our FIN apart."""
    time.sleep(CLOSE_PAUSE)
    end.close_notify()
    end.flush()
    deadline = time.monotonic() + 5
    while not end.got_close_notify and time.monotonic() < deadline:
        end.drain()
        if end.got_close_notify:
            break
        try:
            d = end.recv(5)
        except ConnectionError:
            break
        if not d:
            break
    end.drain()
    time.sleep(CLOSE_PAUSE)
    end.sock.close()
