#!/usr/bin/env python3
"""Regenerate the sample captures in this directory.

Every sample is a real capture (tcpdump or dumpcap on the loopback interface) of
real TLS connections between a CPython ``ssl`` server and a CPython ``ssl``
client.  Both ends drive an ``ssl.SSLObject`` over a pair of ``ssl.MemoryBIO``
and write the TLS bytes to the TCP socket themselves (TCP_NODELAY, one
``sendall`` per intended TCP segment, ``time.sleep`` where a scenario needs a
pause), so the record/segment layout and the close timing are exactly the ones
each scenario describes.  Each capture gets its TLS key log beside it
(``NAME.keys``, SSLKEYLOGFILE format) so Wireshark/tshark can decrypt it.

After a capture is written, it is read back with tshark, the TCP streams are
reassembled, every TLS record is located against its segments and the close
events are located against the peer's records (see ``analyse``).  Each
scenario checks that layout (one record per segment where intended, who closed
first, where the close's reach falls, RST after data ...) and is re-run (up to
3 times) when timing on a busy machine spoiled it.  Finally ``expected.json``
is rewritten from the EXPECT table below plus the measured layout.

Usage:
    python3 samples/make_samples.py                 # regenerate everything
    python3 samples/make_samples.py --only NAME     # one sample (repeatable)
    python3 samples/make_samples.py --show [NAME]   # print the layout of existing captures
    python3 samples/make_samples.py --list

Needs: root (or capture capabilities), tcpdump, dumpcap, tshark, openssl.
Standard library only.

The server key/certificate (test-only-key.pem / test-only-cert.pem) is a
TEST-ONLY self-signed RSA key generated once by this script with the openssl
command line.  It protects nothing; never use it for anything else.
"""

import argparse
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = os.path.join(HERE, "test-only-key.pem")
CERT = os.path.join(HERE, "test-only-cert.pem")
V4 = "127.0.0.1"
V6 = "::1"
TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

# Pauses (seconds).  IDLE is the buggy client's "no more data" timeout: the
# server pauses PAUSE > IDLE between its records, so a client that takes a
# momentary lack of data for a disconnect closes in between.
PAUSE = 0.30
IDLE = 0.10
CLOSE_PAUSE = 0.05   # between close_notify steps, so an alert and a FIN are never back to back


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# certificate
# --------------------------------------------------------------------------

def ensure_cert():
    if os.path.exists(KEY) and os.path.exists(CERT):
        return
    log("generating test-only key/cert with openssl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-keyout", KEY, "-out", CERT, "-days", "36500",
         "-subj", "/CN=localhost/O=pcap-tls-split test-only key",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def contexts(version, keylog):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(CERT, KEY)
    sctx.minimum_version = sctx.maximum_version = version
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(CERT)
    cctx.minimum_version = cctx.maximum_version = version
    # Only the client logs keys, so each secret is written once.
    cctx.keylog_filename = keylog
    return sctx, cctx


# --------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------

class Capture:
    """tcpdump (pcap) or dumpcap (pcapng) on lo, filtered on one port."""

    def __init__(self, path, port, tool="tcpdump", nano=False):
        self.path, self.port, self.tool, self.nano = path, port, tool, nano
        self.lines = []
        self.ready = threading.Event()

    def __enter__(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        filt = "tcp port %d" % self.port
        if self.tool == "tcpdump":
            # --immediate-mode: without it, packets still in the kernel's
            # capture block when SIGINT comes are lost (the last ~1 s).
            cmd = ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-B", "65536", "-w", self.path]
            if self.nano:
                cmd += ["--time-stamp-precision", "nano"]
            cmd.append(filt)
            marker = "listening on"
        else:
            cmd = ["dumpcap", "-i", "lo", "-B", "64", "-f", filt, "-w", self.path]
            marker = "Capturing on"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                if marker in line:
                    self.ready.set()
            self.ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        if not self.ready.wait(15) or self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError("%s did not start: %s" % (self.tool, self.lines))
        # The marker is printed once the device is open and the filter set;
        # give it a moment more anyway.
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        time.sleep(1.5)                    # let the last packets reach the file
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)
        st = os.stat(HERE)                 # tcpdump drops privileges: give the file back
        os.chown(self.path, st.st_uid, st.st_gid)
        os.chmod(self.path, 0o644)
        text = "\n".join(self.lines)
        drops = re.findall(r"(\d+) packets dropped by kernel", text) + \
            re.findall(r"received/dropped on interface .*: \d+/(\d+)", text)
        if any(int(d) for d in drops):
            raise CheckFailed("capture dropped packets: " + text)
        return False


# --------------------------------------------------------------------------
# a TLS end point driven through memory BIOs
# --------------------------------------------------------------------------

class End:
    def __init__(self, sock, ctx, server_side):
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=None if server_side else "localhost")
        self.plain = b""          # decrypted, not yet consumed
        self.got_close_notify = False
        self.eof = False

    # -- raw TCP
    def send(self, data):
        """One sendall: one TCP segment (data < 16 KiB, TCP_NODELAY, idle link)."""
        if data:
            self.sock.sendall(data)

    def take(self):
        """The TLS bytes produced so far, not sent yet."""
        return self.out.read()

    def flush(self):
        self.send(self.take())

    def recv(self, timeout=5.0):
        """bytes; b'' at EOF; None on timeout.  ConnectionError on RST."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(262144)
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(None)
        if not d:
            self.eof = True
        else:
            self.inc.write(d)
        return d

    # -- TLS
    def records(self, plaintext):
        """Encrypt: one record per write of <= 16 KiB.  Returns the TLS bytes."""
        self.obj.write(plaintext)
        return self.take()

    def handshake(self):
        """Run the handshake, flushing each flight.  The bytes the last step
        produced (TLS 1.2 client: nothing; TLS 1.3 client: its Finished; TLS 1.2
        server: ticket+CCS+Finished; TLS 1.3 server: its session tickets) are
        left in the outgoing BIO: the caller decides when to send them."""
        while True:
            try:
                self.obj.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.flush()
                d = self.recv(10)
                if not d:
                    raise ConnectionError("peer went away during the handshake")

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
        except ssl.SSLWantReadError:
            pass

    def abort(self):
        """Close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


# -- HTTP/1.1-like helpers ---------------------------------------------------

def http_complete(buf):
    """Length of the first complete HTTP message in buf, or None."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head = buf[:i].decode("latin-1").split("\r\n")
    n = 0
    for h in head[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            n = int(v)
    total = i + 4 + n
    return total if len(buf) >= total else None


def read_message(end, timeout=5.0):
    """Healthy reader: read until one whole HTTP message (Content-Length) is in,
    or the peer closed.  Returns the message (possibly incomplete)."""
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
            raise TimeoutError("no data for %.1fs" % timeout)


def read_until_idle(end, idle=IDLE):
    """The field bug: read until the socket is quiet for `idle` seconds after
    some data came, and take that momentary "no more data" for the end."""
    got = False
    while True:
        d = end.recv(idle if got else 5.0)
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


def request(path="/", method="GET", body=b""):
    h = "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pcap-tls-split-samples\r\n" % (method, path)
    if body or method == "POST":
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode() + b"\r\n" + body


def response_head(status, length, ctype="text/plain", extra=""):
    return ("HTTP/1.1 %s\r\nServer: sample\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (status, ctype, length, extra)).encode()


def body_of(n, seed=b"pcap-tls-split sample body. "):
    return (seed * (n // len(seed) + 1))[:n]


# -- close sequences ---------------------------------------------------------

def clean_close_first(end):
    """Healthy closer: close_notify, wait for the peer's close_notify, then FIN.
    Pauses keep our alert and our FIN apart."""
    time.sleep(CLOSE_PAUSE)
    end.close_notify()
    end.flush()
    deadline = time.time() + 5
    while not end.got_close_notify and time.time() < deadline:
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


def serve_until_close(end, timeout=5.0):
    """Server after its response: answer a close_notify with ours, wait for
    the peer's FIN, then close.  Returns how the peer ended: 'close_notify',
    'fin', 'reset' or 'timeout'."""
    how = "timeout"
    answered = False
    deadline = time.time() + timeout
    while time.time() < deadline:
        end.drain()
        if end.got_close_notify and not answered:
            end.close_notify()
            try:
                end.flush()
            except OSError:
                pass
            answered = True
            how = "close_notify"
        try:
            d = end.recv(max(0.01, deadline - time.time()))
        except ConnectionError:
            how = "reset"
            break
        if d is None:
            break
        if d == b"":
            if how != "close_notify":
                how = "fin"
            # a peer that closed without reading all may still RST what we
            # sent last: let that happen before our close, so that our close
            # sends nothing more.
            time.sleep(0.1)
            break
    end.sock.close()
    return how


# --------------------------------------------------------------------------
# running one scenario
# --------------------------------------------------------------------------

def run_connections(port, family, version, keylog, pairs):
    """pairs: list of (server_fn, client_fn), one TCP connection each, in order."""
    if os.path.exists(keylog):
        os.unlink(keylog)
    sctx, cctx = contexts(version, keylog)
    addr = V6 if family == socket.AF_INET6 else V4
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((addr, port))
    lst.listen(8)
    try:
        for server_fn, client_fn in pairs:
            errors = []

            def server():
                try:
                    conn, _ = lst.accept()
                    server_fn(End(conn, sctx, True))
                except BaseException as e:      # reported by the main thread
                    errors.append(e)

            t = threading.Thread(target=server)
            t.start()
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.connect((addr, port))
            try:
                client_fn(End(sock, cctx, False))
            finally:
                t.join(20)
            if errors:
                raise errors[0]
            time.sleep(0.2)       # connections apart in time
    finally:
        lst.close()


# -- server behaviours ---------------------------------------------------------

def srv_two_records(pause=PAUSE, status="401 Unauthorized",
                    body=b"<html><body><h1>401 Unauthorized</h1>Missing or bad credentials.</body></html>\n"):
    """The field report's server: header record, pause, body record, each in its own segment."""
    extra = 'WWW-Authenticate: Basic realm="device"\r\n' if status.startswith("401") else ""

    def fn(end):
        end.handshake()
        end.flush()
        read_message(end)
        rec1 = end.records(response_head(status, len(body), "text/html", extra))
        rec2 = end.records(body)
        end.send(rec1)
        time.sleep(pause)
        try:
            end.send(rec2)
        except OSError:
            pass
        serve_until_close(end)
    return fn


def cli_field_bug(send_alert):
    """GET; read until idle; close the socket (optionally after close_notify)."""
    def fn(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request("/api/v1/status")))
        read_until_idle(end)
        if send_alert:
            end.close_notify()
            end.flush()
            # Let the alert be ACKed first: with two unACKed packets (alert
            # and FIN) Linux's tail loss probe retransmits the FIN after a few
            # ms, because the peer delays its ACK of a FIN.
            time.sleep(CLOSE_PAUSE)
        end.sock.close()
    return fn


def cli_healthy(path="/api/v1/status"):
    def fn(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request(path)))
        msg = read_message(end)
        assert http_complete(msg), "healthy client got an incomplete response"
        clean_close_first(end)
    return fn


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

SCENARIOS = {}


def scenario(name, port, version, file=None, family=socket.AF_INET, tool="tcpdump", nano=False):
    def deco(fn):
        SCENARIOS[name] = dict(name=name, port=port, version=version, family=family, tool=tool,
                               nano=nano, file=file or name + ".pcap", pairs=fn, check=None)
        return fn
    return deco


def check(name):
    def deco(fn):
        SCENARIOS[name]["check"] = fn
        return fn
    return deco


@scenario("field-bug-tls12", 8401, TLS12)
def _():
    return [(srv_two_records(), cli_field_bug(send_alert=False))]


@scenario("field-bug-tls13", 8402, TLS13)
def _():
    return [(srv_two_records(), cli_field_bug(send_alert=True))]


FAILING_TRIES = (3, 7)        # 0-based stream numbers of the tries that fail


@scenario("field-bug-tries", 8403, TLS12)
def _():
    pairs = []
    for i in range(10):
        if i in FAILING_TRIES:
            pairs.append((srv_two_records(), cli_field_bug(send_alert=False)))
        else:
            pairs.append((srv_two_records(), cli_healthy()))
    return pairs


@scenario("half-record", 8404, TLS12)
def _():
    def server(end):
        end.handshake()
        end.flush()
        read_message(end)
        body = body_of(8000)
        data = end.records(response_head("200 OK", len(body)) + body)   # one ~8.1 KB record
        end.send(data[:4096])
        time.sleep(PAUSE)
        try:
            end.send(data[4096:])
        except OSError:
            pass
        serve_until_close(end)

    def client(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request("/firmware/chunk/7")))
        read_until_idle(end)          # half a record in: TLS read says "nothing", taken as closed
        end.sock.close()
    return [(server, client)]


@scenario("split-header", 8405, TLS12)
def _():
    def server(end):
        end.handshake()
        end.flush()
        read_message(end)
        body = body_of(1000)
        rec1 = end.records(response_head("200 OK", len(body)))
        rec2 = end.records(body)
        end.send(rec1 + rec2[:2])     # segment ends 2 bytes into record 2's header
        time.sleep(0.2)
        end.send(rec2[2:])
        serve_until_close(end)
    return [(server, cli_healthy())]


@scenario("server-truncates", 8406, TLS12)
def _():
    def server(end):
        end.handshake()
        end.flush()
        read_message(end)
        body = body_of(4000)
        rec1 = end.records(response_head("200 OK", len(body)))
        rec2 = end.records(body)
        end.send(rec1 + rec2[:1500])  # record 2's header says ~4 KB, 1.5 KB of it sent
        time.sleep(0.2)
        end.sock.close()              # FIN, no alert

    def client(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request("/download")))
        read_message(end)             # gets the EOF in the middle of record 2
        end.sock.close()              # no alert: TLS says "unexpected EOF"
    return [(server, client)]


@scenario("straddling-healthy", 8407, TLS13)
def _():
    def server(end):
        end.handshake()
        end.flush()                   # session tickets
        read_message(end)
        body = body_of(256 * 1024)
        recs = [end.records(response_head("200 OK", len(body), "application/octet-stream"))]
        for i in range(0, len(body), 16384):
            recs.append(end.records(body[i:i + 16384]))  # full 16 KiB records
        data = b"".join(recs)
        start5 = sum(map(len, recs[:5]))
        # ... sent in 1400-byte segments, plus one cut 3 bytes into the 5th
        # body record's header (so at least one header is split)
        cuts = sorted(set(range(0, len(data), 1400)) | {start5 + 3}) + [len(data)]
        for a, b in zip(cuts, cuts[1:]):
            end.send(data[a:b])
            time.sleep(0.001)
        read_message(end)             # the upload
        body = body_of(1024 * 1024, b"bulk ")
        data = end.records(response_head("200 OK", len(body), "application/octet-stream") + body)
        end.send(data)                # bulk: the kernel segments it
        serve_until_close(end)

    def client(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request("/big")))
        assert http_complete(read_message(end))
        data = end.records(request("/upload", "POST", body_of(20000, b"upload ")))
        for i in range(0, len(data), 1000):             # client records straddle too
            end.send(data[i:i + 1000])
            time.sleep(0.001)
        assert http_complete(read_message(end, 10))
        clean_close_first(end)
    return [(server, client)]


@scenario("fast-close", 8408, TLS12)
def _():
    def server(end):
        end.handshake()
        end.flush()
        read_message(end)
        body = body_of(600)
        data = end.records(response_head("200 OK", len(body), extra="Connection: close\r\n"))
        data += end.records(body)
        end.close_notify()
        data += end.take()            # headers, body, close_notify ...
        end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        end.send(data)
        end.sock.shutdown(socket.SHUT_WR)     # ... and the FIN, in one segment
        end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        serve_until_close(end)

    def client(end):
        end.handshake()
        # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
        end.send(end.records(request("/")))
        assert http_complete(read_message(end))
        while not (end.got_close_notify or end.eof):
            end.drain()
            if end.got_close_notify:
                break
            end.recv(5)
        end.drain()
        time.sleep(CLOSE_PAUSE)
        end.close_notify()            # answer the server's close_notify
        end.flush()
        time.sleep(CLOSE_PAUSE)
        end.sock.close()
    return [(server, client)]


@scenario("tls13-preconnect", 8409, TLS13)
def _():
    def server(end):
        end.handshake()               # client Finished processed: the tickets are in the BIO
        time.sleep(0.2)
        try:
            end.flush()               # tickets, after the client has gone
        except OSError:
            pass
        serve_until_close(end)

    def client(end):
        end.handshake()
        end.flush()                   # our Finished
        time.sleep(CLOSE_PAUSE)       # (lets the Finished be ACKed: see cli_field_bug)
        end.sock.close()              # and gone, no application data, no alert
    return [(server, client)]


def clean_pairs():
    return [(srv_two_records(status="200 OK", body=body_of(700)), cli_healthy())]


@scenario("clean-tls12-v6", 8410, TLS12, file="clean-tls12-v6.pcapng", family=socket.AF_INET6,
          tool="dumpcap")
def _():
    return clean_pairs()


@scenario("clean-tls13", 8411, TLS13, nano=True)
def _():
    return clean_pairs()


def srv_slow_response(first_chunk):
    """Header record, then an 8 KB body record; the first `first_chunk` bytes of
    the body record go with the headers, the rest after a pause."""
    def fn(end):
        end.handshake()
        end.flush()
        read_message(end)
        body = body_of(8000)
        rec1 = end.records(response_head("200 OK", len(body)))
        rec2 = end.records(body)
        end.send(rec1 + rec2[:first_chunk])
        time.sleep(PAUSE)
        try:
            end.send(rec2[first_chunk:])
        except OSError:
            pass                      # the client reset the connection: nothing is sent
        serve_until_close(end)
    return fn


def cli_abort(end):
    end.handshake()
    # TLS 1.3: the Finished is still in the BIO and goes in the request's segment
    end.send(end.records(request("/logs")))
    read_until_idle(end)
    end.abort()


@scenario("client-rst", 8412, TLS12)
def _():
    return [(srv_slow_response(0), cli_abort)]


@scenario("client-rst-mid-record", 8413, TLS12)
def _():
    return [(srv_slow_response(3000), cli_abort)]


# --------------------------------------------------------------------------
# reading a capture back: records against segments, closes against records
# --------------------------------------------------------------------------

FIELDS = ["frame.number", "frame.time_epoch", "tcp.stream", "tcp.srcport", "tcp.dstport",
          "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset",
          "tcp.seq", "tcp.ack", "tcp.len", "tcp.payload"]


class Side:
    def __init__(self, port):
        self.port = port
        self.segments = []      # (frame, time, offset, length)
        self.data = bytearray()
        self.close = None       # dict(frame, time, kind, ack)
        self.closes = []
        self.records = []
        self.overlaps = 0


class Conn:
    def __init__(self, stream):
        self.stream = stream
        self.sides = {}         # 'client'/'server' -> Side
        self.frames = []        # (frame, time, who, flags, offset, length)


def tshark_rows(path):
    out = subprocess.run(["tshark", "-r", path, "-o", "tcp.relative_sequence_numbers:TRUE",
                          "-o", "tcp.analyze_sequence_numbers:TRUE", "-T", "fields",
                          "-E", "separator=\t", "-E", "occurrence=f"]
                         + sum((["-e", f] for f in FIELDS), []),
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        v = line.split("\t")
        if len(v) < len(FIELDS) or not v[2]:
            continue
        yield dict(zip(FIELDS, v))


def analyse(path):
    conns = {}
    for r in tshark_rows(path):
        st = int(r["tcp.stream"])
        c = conns.setdefault(st, Conn(st))
        sport, dport = int(r["tcp.srcport"]), int(r["tcp.dstport"])
        syn, ack = r["tcp.flags.syn"] in ("1", "True"), r["tcp.flags.ack"] in ("1", "True")
        fin, rst = r["tcp.flags.fin"] in ("1", "True"), r["tcp.flags.reset"] in ("1", "True")
        if not c.sides:
            if syn and not ack:
                c.sides["client"], c.sides["server"] = Side(sport), Side(dport)
            else:
                c.sides["client"], c.sides["server"] = Side(dport), Side(sport)  # sample captures start with SYN
        who = "client" if sport == c.sides["client"].port else "server"
        s = c.sides[who]
        frame, t = int(r["frame.number"]), float(r["frame.time_epoch"])
        seq, n = int(r["tcp.seq"]), int(r["tcp.len"] or 0)
        off = seq - 1
        flags = ("S" if syn else "") + ("F" if fin else "") + ("R" if rst else "") + ("A" if ack else "")
        c.frames.append((frame, t, who, flags, off, n, int(r["tcp.ack"] or 0) - 1 if ack else None))
        if n:
            payload = bytes.fromhex(r["tcp.payload"].replace(":", ""))
            if off < len(s.data):                        # retransmission / overlap
                s.overlaps += 1
                payload = payload[len(s.data) - off:]
                off = len(s.data)
            if off > len(s.data):
                raise CheckFailed("%s: gap in stream %d" % (path, st))
            if payload:
                s.segments.append((frame, t, off, len(payload)))
                s.data += payload
        if (fin or rst) and s.close is None:
            s.close = dict(frame=frame, time=t, kind="rst" if rst else "fin",
                           ack=(int(r["tcp.ack"]) - 1) if ack else None, offset=off + n)
        if fin or rst:
            s.closes.append(dict(frame=frame, kind="rst" if rst else "fin"))
    for c in conns.values():
        for s in c.sides.values():
            parse_records(s)
        locate_close(c)
    return [conns[k] for k in sorted(conns)]


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
    if 0 < len(d) - off < 5:      # a stream ending inside a header
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
    cl, sv = c.sides["client"], c.sides["server"]
    closes = [(s.close["frame"], who) for who, s in c.sides.items() if s.close]
    c.first_closer = None
    c.reach = None
    if not closes:
        return
    frame, who = min(closes)
    c.first_closer = who
    me, peer = c.sides[who], c.sides["server" if who == "client" else "client"]
    reach = me.close["ack"]
    if reach is None:            # RST without ACK: what we had captured of the peer before it
        reach = sum(sg[3] for sg in peer.segments if sg[0] < frame)
    pos = None
    for r in peer.records:
        if r["offset"] < reach < (r["end"] or 10 ** 12):
            pos = dict(where="inside", record=r["index"], received=reach - r["offset"],
                       length=(r["length"] or 0) + 5)
            break
    if pos is None:
        pos = dict(where="boundary", records_before=sum(1 for r in peer.records if r["end"] and r["end"] <= reach))
    pending = [r for r in peer.records if r["offset"] >= reach]
    pos["pending"] = [dict(index=r["index"], type=r["type"], length=r["length"]) for r in pending]
    last_seg = max((sg for sg in peer.segments if sg[0] < frame), default=None, key=lambda sg: sg[0])
    pos["aligned"] = bool(last_seg) and any(r["end"] == last_seg[2] + last_seg[3] for r in peer.records)
    pos["reach"] = reach
    c.reach = pos


# -- printing ----------------------------------------------------------------

TYPES = {20: "CCS", 21: "Alert", 22: "Handshake", 23: "AppData", 24: "Heartbeat"}


def tshark_info(path):
    """frame -> tshark's Info column, decrypted with the key log."""
    name = os.path.basename(path).split(".")[0]
    sc = SCENARIOS.get(name, {})
    keys = os.path.join(os.path.dirname(path), name + ".keys")
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t", "-e", "frame.number",
           "-e", "_ws.col.Info"]
    if os.path.exists(keys):
        cmd[3:3] = ["-o", "tls.keylog_file:" + keys]
    if sc:
        cmd[3:3] = ["-d", "tcp.port==%d,tls" % sc["port"]]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    info = {}
    for line in out.splitlines():
        n, _, i = line.partition("\t")
        if n.isdigit():
            info[int(n)] = i
    return info


def describe(path, conns, out=sys.stdout):
    print("== %s: %d TCP connection(s)" % (os.path.basename(path), len(conns)), file=out)
    info = tshark_info(path)
    for c in conns:
        print("-- stream %d  client :%d  server :%d" % (c.stream, c.sides["client"].port,
                                                        c.sides["server"].port), file=out)
        t0 = c.frames[0][1]
        for frame, t, who, flags, off, n, ack in c.frames:
            s = c.sides[who]
            if n == 0 and flags == "A":
                continue
            recs = []
            for r in s.records:
                if frame in r["frames"] or (not r["frames"] and False):
                    part = ""
                    if r["straddling"]:
                        part = " part %d/%d" % (r["frames"].index(frame) + 1, len(r["frames"]))
                    if r["header_split"] and frame in r["header_frames"]:
                        part += " HEADER-SPLIT"
                    if not r["complete"]:
                        part += " INCOMPLETE"
                    recs.append("%s#%d %s len=%s%s" % (who[0].upper(), r["index"], TYPES.get(r["type"], r["type"]),
                                                      r["length"], part))
            tinfo = info.get(frame, "")
            if n and tinfo:
                recs.append("[tshark: %s]" % tinfo[:90])
            print("  f%-4d %8.3f %s %-4s seq=%-7s len=%-6d ack=%-7s %s" % (
                frame, t - t0, "C>S" if who == "client" else "S>C", flags, "-" if "S" in flags else off, n,
                "-" if ack is None else ack, "; ".join(recs)), file=out)
        for who in ("client", "server"):
            print("   %s records: %s" % (who, record_stats(c.sides[who])), file=out)
        if c.first_closer:
            cl = c.sides[c.first_closer].close
            print("   first closer: %s %s at f%d, reach %s" % (c.first_closer, cl["kind"], cl["frame"], c.reach),
                  file=out)


# --------------------------------------------------------------------------
# checks: is the capture the scenario it claims to be?
# --------------------------------------------------------------------------

def app_records(side):
    return [r for r in side.records if r["type"] == 23]


def one_segment_each(side, records):
    return all(len(r["frames"]) == 1 for r in records)


class CheckFailed(Exception):
    pass


def need(cond, what):
    if not cond:
        raise CheckFailed(what)


def check_field_bug(c, alert):
    cl, sv = c.sides["client"], c.sides["server"]
    apps = app_records(sv)
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client closes first with FIN")
    need(c.reach["where"] == "boundary" and c.reach["aligned"], "client reach on a record boundary, aligned")
    need(len(c.reach["pending"]) == 1 and c.reach["pending"][0]["type"] == 23, "one server record pending")
    need(one_segment_each(sv, apps[-2:]) and apps[-1]["frames"] != apps[-2]["frames"],
         "the two response records are in two segments")
    rst = [f for f in c.frames if f[2] == "client" and "R" in f[3]]
    need(rst and rst[0][0] > apps[-1]["frames"][0], "client RST after the body record")
    need(not any(f[2] == "server" and ("F" in f[3] or "R" in f[3]) for f in c.frames), "server never closes")
    last = cl.records[-1]
    is_alert = last["type"] == 21 or (last["type"] == 23 and last["length"] == 19)
    need(is_alert == alert, "client alert before FIN" if alert else "no client alert before FIN")


def check_clean(c, v13):
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client closes first with FIN")
    need(sv.close and sv.close["kind"] == "fin", "server answers with FIN")
    need(not c.reach["pending"], "nothing pending")
    for s in (cl, sv):
        last = s.records[-1]
        need(last["type"] == 21 if not v13 else (last["type"] == 23 and last["length"] == 19),
             "close_notify before FIN")
    need(not any("R" in f[3] for f in c.frames), "no RST")


def check_healthy_two_records(c, v13):
    check_clean(c, v13)
    sv = c.sides["server"]
    apps = [r for r in sv.records if r["type"] == 23 and r["length"] != 19]
    need(one_segment_each(sv, apps[-2:]) and apps[-1]["frames"] != apps[-2]["frames"],
         "headers and body in two segments")


for _n, _a in (("field-bug-tls12", False), ("field-bug-tls13", True)):
    SCENARIOS[_n]["check"] = (lambda a: lambda conns: [check_field_bug(conns[0], a), need(len(conns) == 1, "1 conn")])(_a)


@check("field-bug-tries")
def _(conns):
    need(len(conns) == 10, "10 connections")
    for c in conns:
        if c.stream in FAILING_TRIES:
            check_field_bug(c, False)
        else:
            check_healthy_two_records(c, False)


@check("half-record")
def _(conns):
    c, = conns
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "inside" and c.reach["received"] == 4096, "reach 4096 bytes into a record")
    big = sv.records[c.reach["record"]]
    need(big["type"] == 23 and len(big["frames"]) == 2 and big["complete"], "one big record in two segments")
    need(any(f[2] == "client" and "R" in f[3] and f[0] > big["frames"][1] for f in c.frames),
         "client RST after the second half")


@check("split-header")
def _(conns):
    c, = conns
    check_clean(c, False)
    sv = c.sides["server"]
    need(record_stats(sv)["header_split"] == 1, "exactly one split header")
    r = [r for r in sv.records if r["header_split"]][0]
    need(r["type"] == 23 and r["offset"] + 2 == [sg for sg in sv.segments if sg[0] == r["frames"][0]][0][2]
         + [sg for sg in sv.segments if sg[0] == r["frames"][0]][0][3], "first segment ends 2 bytes into the header")


@check("server-truncates")
def _(conns):
    c, = conns
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "server" and sv.close["kind"] == "fin", "server FIN first")
    last = sv.records[-1]
    need(not last["complete"] and last["type"] == 23, "server stream ends inside a record")
    need(sv.close["offset"] == len(sv.data), "FIN right at the end of the partial record")
    need(cl.close and cl.close["kind"] == "fin", "client answers with FIN")
    need(not any("R" in f[3] for f in c.frames), "no RST")
    need(sv.close["time"] - sv.segments[-1][1] > 0.15, "pause between the partial record and the FIN")


@check("straddling-healthy")
def _(conns):
    c, = conns
    check_clean(c, True)
    st = record_stats(c.sides["server"])
    need(st["straddling"] >= 16 and st["header_split"] >= 1, "server records straddle")
    need(record_stats(c.sides["client"])["straddling"] >= 1, "client records straddle")
    big = [r for r in c.sides["server"].records if r["length"] == 16401][:16]
    need(len(big) == 16 and all(1 < len(r["frames"]) <= 14 for r in big), "/big sent in <= 1400-byte segments")


@check("fast-close")
def _(conns):
    c, = conns
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "server" and sv.close["kind"] == "fin", "server FIN first")
    fin_frame = sv.close["frame"]
    in_fin = [r for r in sv.records if fin_frame in r["frames"]]
    need([r["type"] for r in in_fin] == [23, 23, 21], "headers, body, close_notify and FIN in one segment")
    need(cl.records[-1]["type"] == 21 and cl.close["kind"] == "fin", "client close_notify then FIN")
    need(not any("R" in f[3] for f in c.frames), "no RST")


@check("tls13-preconnect")
def _(conns):
    c, = conns
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "boundary" and len(c.reach["pending"]) == 2, "two tickets pending")
    need(all(r["type"] == 23 for r in c.reach["pending"]), "tickets are type 23")
    need(not [r for r in cl.records if r["type"] == 23][1:], "client sent only its Finished (one type-23 record)")
    need(any(f[2] == "client" and "R" in f[3] for f in c.frames), "client RST answers the tickets")
    need(not any(f[2] == "server" and ("F" in f[3] or "R" in f[3]) for f in c.frames), "server never closes")


SCENARIOS["clean-tls12-v6"]["check"] = lambda conns: [need(len(conns) == 1, "1"),
                                                      check_healthy_two_records(conns[0], False)]
SCENARIOS["clean-tls13"]["check"] = lambda conns: [need(len(conns) == 1, "1"),
                                                   check_healthy_two_records(conns[0], True)]


def check_abort(conns, inside):
    c, = conns
    cl, sv = c.sides["client"], c.sides["server"]
    need(c.first_closer == "client" and cl.close["kind"] == "rst", "client RST first")
    need(not any(f[2] == "client" and "F" in f[3] for f in c.frames), "client never sends FIN")
    need(not any(f[2] == "server" and ("F" in f[3] or "R" in f[3]) for f in c.frames), "server never closes")
    need(not any(f[2] == "server" and f[5] and f[0] > cl.close["frame"] for f in c.frames),
         "no server data after the RST")
    if inside:
        need(c.reach["where"] == "inside" and c.reach["received"] == 3000, "RST 3000 bytes into the body record")
    else:
        need(c.reach["where"] == "boundary" and not c.reach["pending"], "RST on a record boundary, nothing pending")


SCENARIOS["client-rst"]["check"] = lambda conns: check_abort(conns, False)
SCENARIOS["client-rst-mid-record"]["check"] = lambda conns: check_abort(conns, True)


# --------------------------------------------------------------------------
# expectations (derived from SIGNATURES.md applied to the layout above)
# --------------------------------------------------------------------------

def F(code, side, severity, **evidence):
    d = dict(code=code, side=side, severity=severity)
    if evidence:
        d["evidence"] = evidence
    return d


def N(code, side):
    return dict(code=code, side=side)


FIELD_BUG_MUST = [F("close_before_pending_records", "client", "high", aligned=True),
                  F("reset_on_data_after_close", "client", "medium")]
FIELD_BUG_MUST_NOT = [N("abortive_close", "client"), N("close_inside_record", "client"),
                      N("close_before_peer_finished", "client"), N("truncated_record", "server"),
                      N("no_close_notify", "server"), N("fast_close_after_data", "server")]
HEALTHY = dict(must=[], must_not_severity_at_or_above="info")

EXPECT = {
    "field-bug-tls12": dict(
        must=FIELD_BUG_MUST + [F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above=None, must_not=FIELD_BUG_MUST_NOT,
        may=[],
        notes="The field report, TLS 1.2. Server: 401 header record, 300 ms pause, body record, one "
              "segment each. Client reads the header record, is idle 100 ms, closes its socket (FIN, "
              "no alert) with reach exactly at the end of the header record; the body record then "
              "arrives and the client's kernel answers RST. The server never closes."),
    "field-bug-tls13": dict(
        must=FIELD_BUG_MUST, must_not_severity_at_or_above=None,
        must_not=FIELD_BUG_MUST_NOT + [N("no_close_notify", "client")],
        may=[F("fast_close_after_data", "client", "info")],
        notes="The field report, TLS 1.3. As field-bug-tls12, but the client sends its close_notify "
              "(a 19-byte type-23 record) 50 ms before its FIN, so no no_close_notify for the client "
              "(the TLS 1.3 alert-size rule counts it, confidence medium). The server's session "
              "tickets come before the response and are received: only the body record is pending. "
              "fast_close_after_data for the client is listed in may: its last record is an alert, "
              "not data, right before its FIN."),
    "field-bug-tries": dict(
        must=FIELD_BUG_MUST + [F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above=None, must_not=[], may=[],
        notes="10 tries (streams 0-9) of the field-report exchange, TLS 1.2. Streams %s fail exactly "
              "as field-bug-tls12; the others wait for the body record and close cleanly (client "
              "close_notify, server close_notify, client FIN, server FIN): no findings. See streams."
              % ", ".join(map(str, FAILING_TRIES))),
    "half-record": dict(
        must=[F("close_inside_record", "client", "high"), F("reset_on_data_after_close", "client", "medium"),
              F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above=None,
        must_not=[N("close_before_pending_records", "client"), N("truncated_record", "server"),
                  N("abortive_close", "client")],
        may=[],
        notes="TLS 1.2. The server's response is one ~8 KB application-data record sent as 4096 bytes, "
              "300 ms pause, the rest. The client, idle 100 ms with half a record in, closes (FIN, no "
              "alert): reach 4096 bytes into the record. The second half arrives at the closed socket: "
              "RST (the rest of an application-data record, so reset_on_data_after_close is medium)."),
    "split-header": dict(
        must=[], must_not_severity_at_or_above="info", must_not=[], may=[],
        notes="TLS 1.2, healthy. The server's header record and the first 2 bytes of the body "
              "record's header share a segment; 200 ms later the rest. The client reads it all; "
              "client close_notify, server close_notify, client FIN, server FIN, each step 50 ms "
              "apart. Server records: header_split 1, straddling 1 (see layout)."),
    "server-truncates": dict(
        must=[F("truncated_record", "server", "high"), F("no_close_notify", "server", "low"),
              F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above=None,
        must_not=[N("close_inside_record", "server"), N("close_before_pending_records", "server"),
                  N("reset_on_data_after_close", "client"), N("close_before_peer_finished", "server"),
                  N("abortive_close", "client"), N("abortive_close", "server")],
        may=[F("fast_close_after_data", "server", "info")],
        notes="TLS 1.2. The server sends its header record plus 1500 bytes of a ~4 KB body record in "
              "one segment, pauses 200 ms and closes (FIN, no alert): its stream ends inside its own "
              "record. The client gets the EOF and closes too (FIN, no alert; it answers the server's "
              "close, but no_close_notify is defined for any side that closes without an alert). "
              "fast_close_after_data is in may only: the FIN comes 200 ms after the partial record."),
    "straddling-healthy": dict(
        must=[], must_not_severity_at_or_above="info", must_not=[], may=[],
        notes="TLS 1.3, healthy, one keep-alive connection: GET answered by a header record and 16 "
              "full 16 KiB records sent in 1400-byte segments (records straddle 12-13 segments, some "
              "headers split); a 20 KB POST sent by the client in 1000-byte segments; a 1 MiB "
              "response in one sendall (kernel-sized segments, up to 64 KiB on lo). Clean close "
              "(19-byte close_notify records both sides, then FINs). Nothing at all expected."),
    "fast-close": dict(
        must=[F("fast_close_after_data", "server", "info")],
        must_not_severity_at_or_above="low",
        must_not=[N("close_before_pending_records", "server"), N("no_close_notify", "server"),
                  N("no_close_notify", "client"), N("reset_on_data_after_close", "client")],
        may=[F("fast_close_after_data", "client", "info")],
        notes="TLS 1.2. The server's header record, body record, close_notify and FIN are all in one "
              "segment (TCP_CORK + shutdown). The client reads everything, answers with its "
              "close_notify 50 ms later and its FIN 50 ms after that; the server (half-closed) reads "
              "them and closes. The client's own close_notify-then-FIN is listed in may only."),
    "tls13-preconnect": dict(
        must=[F("close_before_pending_records", "client", "info", post_handshake_only=True),
              F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above="high",
        must_not=[N("close_during_handshake", "client"), N("close_before_peer_finished", "client"),
                  N("abortive_close", "client")],
        may=[F("reset_on_data_after_close", "client", "medium"), F("fast_close_after_data", "client", "info")],
        notes="TLS 1.3 preconnect. The client sends its Finished and closes 50 ms later (FIN, no alert, no "
              "application data). The server sends its two session tickets (one segment, two type-23 "
              "records) 200 ms later; the client's kernel answers RST. By the definition of "
              "application data the tickets are post-handshake messages, not application data, so "
              "reset_on_data_after_close should not be raised; an analyzer that cannot tell them "
              "apart may raise it (medium): listed in may."),
    "clean-tls12-v6": dict(HEALTHY, must_not=[], may=[],
        notes="TLS 1.2 over IPv6 (::1), pcapng written by dumpcap. GET; 200 header record, 300 ms, "
              "body record; client close_notify, server close_notify, client FIN, server FIN. "
              "Nothing at all expected."),
    "clean-tls13": dict(HEALTHY, must_not=[], may=[],
        notes="TLS 1.3, nanosecond pcap (tcpdump --time-stamp-precision nano). Same exchange as "
              "clean-tls12-v6; close_notify records are 19-byte type-23 records. Nothing at all expected."),
    "client-rst": dict(
        must=[F("abortive_close", "client", "low"), F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above="medium",
        must_not=[N("close_before_pending_records", "client"), N("close_before_peer_finished", "client"),
                  N("reset_on_data_after_close", "client")],
        may=[],
        notes="TLS 1.2. Server: header record, then (300 ms later) the body record. The client reads "
              "the header record and, idle 100 ms, aborts with RST (SO_LINGER 0) on a record "
              "boundary. The server's send of the body fails (ECONNRESET): nothing more is on the "
              "wire, so no records are pending and the server never answers the close (it cannot "
              "answer a RST), hence no close_before_pending_records nor close_before_peer_finished."),
    "client-rst-mid-record": dict(
        must=[F("close_inside_record", "client", "high"), F("abortive_close", "client", "low"),
              F("no_close_notify", "client", "low")],
        must_not_severity_at_or_above=None,
        must_not=[N("truncated_record", "server"), N("reset_on_data_after_close", "client")],
        may=[F("capture_ended_inside_record", "server", "info")],
        notes="TLS 1.2. Server: header record plus the first 3000 bytes of an 8 KB body record in one "
              "segment, the rest 300 ms later. The client aborts with RST (SO_LINGER 0) after 100 ms "
              "idle: reach 3000 bytes into the body record (close_inside_record, whatever the close "
              "kind). The server's second send fails: its stream ends inside its record but it never "
              "sent FIN or RST, so no truncated_record; capture_ended_inside_record is in may."),
}


def stream_expect(name, c):
    if name == "field-bug-tries":
        if c.stream in FAILING_TRIES:
            e = EXPECT["field-bug-tls12"]
            return dict(must=e["must"], must_not_severity_at_or_above=None, must_not=e["must_not"])
        return dict(must=[], must_not_severity_at_or_above="info")
    return None


def layout_json(c):
    d = {"client": record_stats(c.sides["client"]), "server": record_stats(c.sides["server"])}
    if c.first_closer:
        cl = c.sides[c.first_closer].close
        d["close"] = dict(first_closer=c.first_closer, kind=cl["kind"], frame=cl["frame"],
                          reach=c.reach["reach"], where=c.reach["where"],
                          pending_records=len(c.reach["pending"]))
        if c.reach["where"] == "inside":
            d["close"]["inside_record"] = c.reach["record"]
            d["close"]["bytes_received"] = c.reach["received"]
    return d


def write_expected(results):
    path = os.path.join(HERE, "expected.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    for name, conns in results.items():
        sc = SCENARIOS[name]
        e = dict(EXPECT[name])
        e["tls_version"] = "1.3" if sc["version"] == TLS13 else "1.2"
        e["tls_connections"] = len(conns)
        e["streams"] = {}
        for c in conns:
            s = {"layout": layout_json(c)}
            se = stream_expect(name, c)
            if se:
                s.update(se)
            e["streams"][str(c.stream)] = s
        old[sc["file"]] = e
    order = [SCENARIOS[n]["file"] for n in SCENARIOS]
    doc = {k: old[k] for k in order if k in old}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def check_no_retransmissions(path):
    out = subprocess.run(["tshark", "-r", path, "-Y",
                          "tcp.analysis.retransmission or tcp.analysis.fast_retransmission or "
                          "tcp.analysis.spurious_retransmission or tcp.analysis.lost_segment or "
                          "tcp.analysis.out_of_order or tcp.analysis.duplicate_ack",
                          "-T", "fields", "-e", "frame.number"],
                         check=True, capture_output=True, text=True).stdout.split()
    need(not out, "retransmissions / lost segments / dup ACKs in frames %s" % out)


# --------------------------------------------------------------------------

def make(name, attempts=3):
    sc = SCENARIOS[name]
    path = os.path.join(HERE, sc["file"])
    keylog = os.path.join(HERE, name + ".keys")
    for attempt in range(1, attempts + 1):
        log("[%s] capture %s (port %d, attempt %d)" % (name, sc["file"], sc["port"], attempt))
        try:
            with Capture(path, sc["port"], sc["tool"], sc["nano"]):
                run_connections(sc["port"], sc["family"], sc["version"], keylog, sc["pairs"]())
            conns = analyse(path)
            need(all(c.frames[0][3] == "S" for c in conns), "every connection captured from its SYN")
            sc["check"](conns)
            check_no_retransmissions(path)
            return conns
        except CheckFailed as e:
            log("[%s] layout check failed: %s" % (name, e))
            if os.path.exists(path):
                describe(path, analyse(path), sys.stderr)
            time.sleep(1)
    raise SystemExit("%s: could not produce the intended layout in %d attempts" % (name, attempts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", help="only this sample (repeatable)")
    ap.add_argument("--show", nargs="*", metavar="NAME", help="print the layout of existing captures")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for n, sc in SCENARIOS.items():
            print("%-24s %s" % (n, sc["file"]))
        return
    if a.show is not None:
        for n in a.show or list(SCENARIOS):
            path = os.path.join(HERE, SCENARIOS[n]["file"])
            describe(path, analyse(path))
        return
    names = a.only or list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            raise SystemExit("unknown sample %r; --list shows them" % n)
    ensure_cert()
    results = {}
    for n in names:
        results[n] = make(n)
        describe(os.path.join(HERE, SCENARIOS[n]["file"]), results[n])
    write_expected(results)


if __name__ == "__main__":
    main()
