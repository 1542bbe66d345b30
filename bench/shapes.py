"""The traffic of the benchmark's capture shapes: real TLS on real sockets.

This module is what runs *inside* the network namespaces that
``bench/make_capture.py`` sets up (it starts the roles below with
``ip netns exec NS python3 bench/shapes.py ROLE ...``); it never captures and
never touches the host's network. Every TLS byte is made by OpenSSL through
CPython's ``ssl`` module, TLS 1.2 and 1.3; nothing is hand-assembled.

Roles (each prints one JSON line of counters on stdout when it ends):

``bulk``
    Shape A. A TLS server and client in one process: ``--connections`` connections
    one after another, each sending ``--bytes`` of application data from server to
    client in 16 KiB records, then close_notify both ways; TLS 1.3 and 1.2
    alternately.

``tls-server``
    The fleet's TLS server on one port (shapes B and C): a thread per connection.
    OpenSSL makes the records through an ``ssl.SSLObject`` over memory BIOs and this
    code hands them to the socket, so a record can be sent in pieces with pauses
    between them. What to answer and how to close is read from the request line
    (the client chose it): see ``CLOSES``.

``tls-clients``
    The fleet's clients: ``--count`` connections over ``--threads`` threads, to the
    given server addresses and ports, each from one of the given source addresses;
    TLS 1.2 or 1.3 at random (TLS 1.2 only on a port served TLS 1.2 only), a small
    HTTP request naming the response (1-3 records, sizes, pieces, pauses) and the
    close, then that close.

``services`` / ``service-clients``
    Shape C's other traffic: plain HTTP over TCP (port 80), an SSH-like TCP service
    (port 22: banners, then length-prefixed random bytes both ways), DNS over UDP
    (port 53: a tiny responder answering A/AAAA queries), syslog over UDP (port
    514) and ICMP echo (raw socket; the peer's kernel answers). ARP is made by the
    kernel (make_capture.py flushes the neighbour caches now and then).

Servers run until stdin closes (make_capture.py holds it open), then print their
counters. Clients are paced to spread their work over ``--seconds``.
"""

import argparse
import collections
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
RECORD_MAX = 16384

# How a fleet connection ends, chosen by the client and named in its request; weight.
CLOSES = {
    "clean": 30,               # server close_notify, client close_notify, FIN both ways
    "client-clean": 10,        # client close_notify first, server answers it, FIN both ways
    "server-fin": 14,          # server FIN without close_notify; client FIN back
    "client-fin": 10,          # client FIN without close_notify after the response; server FIN back
    "client-rst": 8,           # client RST (SO_LINGER 0) after the response
    "server-rst": 8,           # server RST right after the response
    "server-notify-rst": 5,    # server close_notify then RST
    "client-early": 8,         # client FIN right after the first of two or more records; RST follows
    "server-silent": 4,        # server FIN after the request, no response (sometimes close_notify first)
    "handshake-fail": 3,       # client insists on TLS 1.3 to a TLS 1.2-only port: protocol_version alert
}


def lingering_close(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def report(counters, **extra):
    print(json.dumps(dict(counters, **extra), sort_keys=True), flush=True)


def wait_stdin():
    """Block until make_capture.py closes our stdin (its way of saying stop)."""
    sys.stdin.read()


def server_context(cert, key, tls12_only=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_contexts():
    """Client contexts (no verification) by (version, lenient), version "1.2" or
    "1.3" (each refuses the other); lenient ones take a FIN without close_notify as
    an end (OP_IGNORE_UNEXPECTED_EOF), the others, as OpenSSL 3 does by default,
    answer it with a fatal decode_error alert."""
    out = {}
    for name, version in (("1.2", ssl.TLSVersion.TLSv1_2), ("1.3", ssl.TLSVersion.TLSv1_3)):
        for lenient in (False, True):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = ctx.maximum_version = version
            if lenient:
                ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
            out[name, lenient] = ctx
    return out


# ----------------------------------------------------------------------------- shape A: bulk

def bulk(args):
    server_ctx = server_context(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(8)
    counters = collections.Counter()

    def serve():
        chunk = os.urandom(RECORD_MAX)
        for _ in range(args.connections):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(100)
                left = args.bytes
                while left > 0:
                    tls.sendall(chunk[:min(left, RECORD_MAX)])
                    left -= RECORD_MAX
                tls.unwrap()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    contexts = client_contexts()
    for i in range(args.connections):
        ctx = contexts["1.3" if i % 2 == 0 else "1.2", False]
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", args.port))) as tls:
            counters["tls" + tls.version()[-3:]] += 1
            tls.sendall(b"GET /bulk HTTP/1.1\r\nHost: bulk.example\r\n\r\n")
            got = 0
            while got < args.bytes:
                data = tls.recv(1 << 16)
                if not data:
                    break
                got += len(data)
            counters["bytes"] += got
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
    thread.join(30)
    counters["connections"] = args.connections
    report(counters)


# ----------------------------------------------------------------------------- fleet TLS server

class Closed(Exception):
    """The peer closed (FIN, RST or close_notify)."""


class BioTLS:
    """The server side of one TLS connection: OpenSSL makes every record (an
    ssl.SSLObject over memory BIOs) and we send them, whole or in pieces."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def flush(self, pieces=1, pause=0.0):
        data = self.outgoing.read()
        if not data:
            return
        if pieces <= 1 or len(data) < pieces:
            self.sock.sendall(data)
            return
        cuts = sorted(random.sample(range(1, len(data)), pieces - 1))
        for a, b in zip([0] + cuts, cuts + [len(data)]):
            self.sock.sendall(data[a:b])
            if b < len(data):
                time.sleep(pause)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            raise Closed("FIN")
        self.incoming.write(data)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self._fill()
            except ssl.SSLError:
                self.flush()  # the alert
                raise
        self.flush()  # the last flight; TLS 1.3 session tickets

    def read(self):
        """Plaintext; b"" once the peer's close_notify is in (as SSLSocket.recv)."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                self.flush()
                self._fill()
            except ssl.SSLZeroReturnError:
                raise Closed("close_notify")

    def write(self, data, pieces=1, pause=0.0):
        self.obj.write(data)
        self.flush(pieces, pause)

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:  # sent ours; the peer's is not in yet
            pass
        self.flush()

    def drain(self):
        """Read until the peer closes; True when it closed with close_notify."""
        try:
            while self.read():
                pass
            return True
        except Closed as why:
            return str(why) == "close_notify"
        except (ssl.SSLError, OSError):
            return False


def parse_request(text):
    """The plan named in the request line: GET /obj/ID?r=SIZES&p=PIECES&w=MS&c=CLOSE"""
    path = text.split(" ", 2)[1]
    query = dict(kv.split("=", 1) for kv in path.split("?", 1)[1].split("&"))
    return ([int(s) for s in query["r"].split(".")], int(query["p"]), int(query["w"]) / 1000,
            query["c"])


def response_records(sizes):
    """The plaintext of each response record: the HTTP header at the start of the first."""
    total = sum(sizes)

    def header(length, space=" "):
        return (f"HTTP/1.1 200 OK\r\nServer: fleet\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length:{space}{length}\r\n\r\n").encode()

    # Content-Length counts the body, whose size depends on the header's: find the
    # number of digits that fits (for some totals none does, and one more space does)
    for space in (" ", "  "):
        base = len(header("", space))
        fits = [total - base - d for d in range(1, 8) if len(str(total - base - d)) == d]
        if fits:
            length = fits[0]
            head = header(length, space)
            break
    assert len(head) + length == total, (total, length)
    data = head + os.urandom(length)
    out, at = [], 0
    for size in sizes:
        out.append(data[at:at + size])
        at += size
    return out


def handle_tls(sock, ctx, counters):
    sock.settimeout(20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = BioTLS(sock, ctx)
    try:
        tls.handshake()
        request = b""
        while b"\r\n\r\n" not in request:
            data = tls.read()
            if not data:
                raise Closed("eof")
            request += data
        sizes, pieces, pause, close = parse_request(request.decode("latin-1"))
        counters[close] += 1
        if close == "server-silent":
            if random.random() < 0.5:
                tls.close_notify()
            sock.close()
            return
        for i, record in enumerate(response_records(sizes)):
            if i:
                time.sleep(pause if close != "client-early" else max(pause, 0.06))
            tls.write(record, pieces if random.random() < 0.5 else 1, pause / 4)
        if close == "clean":
            tls.close_notify()
            tls.drain()
            sock.close()
        elif close in ("client-clean", "client-fin", "client-rst", "client-early"):
            if tls.drain():  # a close_notify is answered with ours, FIN or RST just closed
                tls.close_notify()
            sock.close()
        elif close == "server-fin":
            sock.close()
        elif close == "server-rst":
            lingering_close(sock)
        elif close == "server-notify-rst":
            tls.close_notify()
            time.sleep(0.002)
            lingering_close(sock)
        else:
            sock.close()
    except (Closed, ssl.SSLError, OSError) as exc:
        counters["server:" + type(exc).__name__] += 1
        sock.close()


def tls_server(args):
    ctx = server_context(args.cert, args.key, tls12_only=args.tls12_only)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bind, args.port))
    listener.listen(4096)
    counters = collections.Counter()

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            counters["accepted"] += 1
            threading.Thread(target=handle_tls, args=(conn, ctx, counters), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print("ready", flush=True)
    wait_stdin()
    time.sleep(0.5)
    report(counters, port=args.port)


# ----------------------------------------------------------------------------- fleet TLS clients

def pick_plan(rng, tls12_only_port):
    close = rng.choices(list(CLOSES), weights=list(CLOSES.values()))[0]
    if close == "handshake-fail" and not tls12_only_port:
        close = "clean"
    n = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
    if close == "client-early":
        n = max(n, 2)
    sizes = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            sizes.append(rng.randint(100, 1200))
        elif kind < 0.92:
            sizes.append(rng.randint(1200, 3000))
        else:
            sizes.append(rng.randint(3000, 8000))
    sizes[0] = max(sizes[0], 160)  # room for the HTTP header
    pieces = rng.choice((2, 2, 3, 4))
    pause_ms = rng.choice((0, 1, 2, 5, 10, 20))
    return sizes, pieces, pause_ms, close


def tls_client_once(rng, contexts, server, port, source, tls12_only_port, counters):
    sizes, pieces, pause_ms, close = pick_plan(rng, tls12_only_port)
    if close == "handshake-fail":  # TLS 1.3 only, to a TLS 1.2-only port
        version = "1.3"
    elif tls12_only_port:
        version = "1.2"
    else:
        version = "1.3" if rng.random() < 0.6 else "1.2"
    ctx = contexts[version, rng.random() < 0.5]
    raw = socket.socket()
    raw.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    raw.bind((source, 0))
    raw.settimeout(20)
    try:
        raw.connect((server, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(raw, server_hostname=f"svc{port}.fleet.example")
    except (ssl.SSLError, OSError) as exc:
        counters["client:handshake:" + type(exc).__name__] += 1
        raw.close()
        return
    counters["tls" + tls.version()[-3:]] += 1
    counters[close] += 1
    plan = "r=" + ".".join(map(str, sizes)) + f"&p={pieces}&w={pause_ms}&c={close}"
    request = (f"GET /obj/{rng.randrange(1 << 30):x}?{plan} HTTP/1.1\r\n"
               f"Host: svc{port}.fleet.example\r\nUser-Agent: fleet-client/1.0\r\n"
               f"Accept: */*\r\n\r\n").encode()
    try:
        tls.sendall(request)
        want = sum(sizes) if close != "client-early" else sizes[0]
        got = 0
        while got < want:
            data = tls.recv(65536)
            if not data:
                break
            got += len(data)
        if close == "clean":
            while tls.recv(65536):  # up to the server's close_notify
                pass
            tls.unwrap()
            tls.close()
        elif close == "client-clean":
            tls.unwrap()
            tls.close()
        elif close in ("client-fin", "client-early"):
            tls.close()
        elif close == "client-rst":
            lingering_close(tls)
        else:  # the server closes: read to its FIN, RST or close_notify
            try:
                while tls.recv(65536):
                    pass
            finally:
                tls.close()
        counters["client:ok"] += 1
    except (ssl.SSLError, OSError) as exc:
        counters[f"client:{close}:{type(exc).__name__}"] += 1
        tls.close()


def paced(count, seconds, threads, job):
    """Run job(i) count times over threads threads, spread over about seconds."""
    start = time.monotonic()
    interval = seconds / max(count, 1)

    def worker(w):
        for i in range(w, count, threads):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            job(i)

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker, w) for w in range(threads)]:
            f.result()


def tls_clients(args):
    contexts = client_contexts()
    counters = collections.Counter()
    lock = threading.Lock()
    targets = [(s, int(p)) for s in args.servers.split(",") for p in args.ports.split(",")]
    tls12_only = {int(p) for p in args.tls12_only_ports.split(",") if p}
    sources = args.sources.split(",")

    def job(i):
        rng = random.Random(args.seed * 1_000_003 + i)
        server, port = rng.choice(targets)
        local = collections.Counter()
        tls_client_once(rng, contexts, server, port, rng.choice(sources), port in tls12_only, local)
        with lock:
            counters.update(local)

    paced(args.count, args.seconds, args.threads, job)
    report(counters, connections=args.count)


# ----------------------------------------------------------------------------- shape C: other services

SSH_BANNER_SERVER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_BANNER_CLIENT = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
BLOB = os.urandom(1 << 20)


def blob(n):
    at = random.randrange(0, len(BLOB) - n) if n < len(BLOB) else 0
    return BLOB[at:at + n]


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise Closed("eof")
        out += data
    return out


def serve_tcp(bind, port, handler, counters):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(1024)

    def run(conn):
        conn.settimeout(20)
        try:
            handler(conn)
        except (Closed, OSError):
            pass
        finally:
            conn.close()

    def accept():
        while True:
            conn, _ = listener.accept()
            counters[f"tcp/{port}"] += 1
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def http_handler(conn):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        size = int(head.split(b" ", 2)[1].rsplit(b"/", 1)[1])
        conn.sendall(b"HTTP/1.1 200 OK\r\nServer: plain\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size + blob(size))


def ssh_handler(conn):
    conn.sendall(SSH_BANNER_SERVER)
    banner = b""
    while not banner.endswith(b"\r\n"):
        data = conn.recv(1)
        if not data:
            return
        banner += data
    while True:
        length = struct.unpack("!I", recv_exact(conn, 4))[0]
        body = recv_exact(conn, length)
        reply = struct.unpack("!I", body[:4])[0]
        if reply == 0:
            return
        conn.sendall(struct.pack("!I", reply) + blob(reply))


def dns_name(data, at):
    labels = []
    while data[at]:
        labels.append(data[at + 1:at + 1 + data[at]])
        at += 1 + data[at]
    return b".".join(labels), at + 1


def serve_dns(bind, counters):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 53))

    def run():
        while True:
            query, peer = sock.recvfrom(2048)
            try:
                qid = struct.unpack_from("!H", query)[0]
                _, end = dns_name(query, 12)
                qtype = struct.unpack_from("!H", query, end)[0]
                question = query[12:end + 4]
                if qtype == 28:
                    rdata = b"\x20\x01\x0d\xb8" + os.urandom(12)
                else:
                    rdata = bytes([198, 51, 100, random.randrange(1, 255)])
                answer = b"\xc0\x0c" + struct.pack("!HHIH", qtype if qtype == 28 else 1, 1, 300,
                                                   len(rdata)) + rdata
                sock.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer, peer)
                counters["dns"] += 1
            except (struct.error, IndexError):
                counters["dns:bad"] += 1

    threading.Thread(target=run, daemon=True).start()


def serve_syslog(bind, counters):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 514))

    def run():
        while True:
            sock.recv(65536)
            counters["syslog"] += 1

    threading.Thread(target=run, daemon=True).start()


def services(args):
    counters = collections.Counter()
    serve_tcp(args.bind, 80, http_handler, counters)
    serve_tcp(args.bind, 22, ssh_handler, counters)
    serve_dns(args.bind, counters)
    serve_syslog(args.bind, counters)
    print("ready", flush=True)
    wait_stdin()
    time.sleep(0.5)
    report(counters)


def connect_from(source, server, port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source, 0))
    sock.settimeout(20)
    sock.connect((server, port))
    return sock


def http_client(rng, server, source):
    with connect_from(source, server, 80) as sock:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            size = int(rng.lognormvariate(9.0, 1.0)) + 200  # median ~8 KB, long tail
            size = min(size, 400_000)
            sock.sendall(f"GET /files/{rng.randrange(1 << 20):x}/{size} HTTP/1.1\r\nHost: web.field.example\r\n"
                         f"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise Closed("eof")
                buf += data
            head, body = buf.split(b"\r\n\r\n", 1)
            left = int(head.rsplit(b"Content-Length: ", 1)[1].split(b"\r\n")[0]) - len(body)
            while left > 0:
                data = sock.recv(65536)
                if not data:
                    raise Closed("eof")
                left -= len(data)
            time.sleep(rng.random() * 0.05)


def ssh_client(rng, server, source):
    with connect_from(source, server, 22) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(SSH_BANNER_CLIENT)
        recv_exact(sock, len(SSH_BANNER_SERVER))
        for _ in range(rng.randint(10, 80)):
            if rng.random() < 0.9:  # a keystroke and its echo
                size, reply = rng.randint(36, 100), rng.randint(36, 150)
            else:  # a command's output
                size, reply = rng.randint(36, 300), rng.randint(500, 6000)
            sock.sendall(struct.pack("!II", size, reply) + blob(size - 4))
            recv_exact(sock, 4 + reply)
            time.sleep(rng.random() * 0.03)
        sock.sendall(struct.pack("!II", 8, 0) + blob(4))


def dns_client(rng, server, source):
    names = ("www", "api", "cdn", "mail", "login", "static", "img", "auth", "db", "ntp")
    zones = ("example.com", "example.net", "example.org", "field.example", "corp.example")
    name = f"{rng.choice(names)}{rng.randint(0, 40)}.{rng.choice(zones)}"
    qtype = rng.choice((1, 1, 1, 28))
    qid = rng.randrange(65536)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1)
        sock.sendto(query, (server, 53))
        sock.recv(2048)


SYSLOG_APPS = ("sshd", "cron", "nginx", "kernel", "systemd", "postfix/smtpd", "dhclient", "sudo")


def syslog_client(rng, server, source, sock):
    app = rng.choice(SYSLOG_APPS)
    words = " ".join(f"{rng.choice(('user', 'session', 'from', 'port', 'id', 'status'))}="
                     f"{rng.randrange(100000)}" for _ in range(rng.randint(3, 40)))
    msg = (f"<{rng.choice((13, 30, 38, 86, 134, 166))}>{time.strftime('%b %d %H:%M:%S')} "
           f"host{rng.randint(1, 30)} {app}[{rng.randint(100, 60000)}]: {words}")
    sock.sendto(msg.encode(), (server, 514))


def icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(sock, server, ident, seq):
    payload = struct.pack("!d", time.time()) + bytes(range(48))
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, icmp_checksum(header + payload), ident, seq) + payload
    sock.sendto(packet, (server, 0))


def service_clients(args):
    counters = collections.Counter()
    lock = threading.Lock()
    sources = args.sources.split(",")
    server = args.server
    syslog_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog_sock.bind((sources[0], 0))

    def counted(kind, fn):
        def job(i):
            rng = random.Random(f"{args.seed}-{kind}-{i}")
            try:
                fn(rng, server, rng.choice(sources))
                outcome = kind
            except (Closed, OSError) as exc:
                outcome = f"{kind}:{type(exc).__name__}"
            with lock:
                counters[outcome] += 1
        return job

    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.settimeout(0.5)

    def drain_icmp():
        while True:
            try:
                icmp.recv(2048)
                counters["icmp:reply"] += 1
            except TimeoutError:
                if done.is_set():
                    return
            except OSError:
                return

    done = threading.Event()
    threading.Thread(target=drain_icmp, daemon=True).start()
    kinds = [
        (args.http, 6, counted("http", http_client)),
        (args.ssh, 12, counted("ssh", ssh_client)),
        (args.dns, 4, counted("dns", dns_client)),
        (args.syslog, 1, counted("syslog", lambda rng, s, src: syslog_client(rng, s, src, syslog_sock))),
        (args.icmp, 1, lambda i: ping(icmp, server, os.getpid() & 0xFFFF, i & 0xFFFF)),
    ]
    runners = [threading.Thread(target=paced, args=(count, args.seconds, threads, job))
               for count, threads, job in kinds if count]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    time.sleep(0.5)
    done.set()
    counters["icmp"] = args.icmp
    report(counters)


# ----------------------------------------------------------------------------- command line

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("bulk")
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p = sub.add_parser("tls-server")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--tls12-only", action="store_true")
    p = sub.add_parser("tls-clients")
    p.add_argument("--servers", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--tls12-only-ports", default="")
    p.add_argument("--sources", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("services")
    p.add_argument("--bind", required=True)
    p = sub.add_parser("service-clients")
    p.add_argument("--server", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--seed", type=int, default=1)
    for kind in ("http", "ssh", "dns", "syslog", "icmp"):
        p.add_argument(f"--{kind}", type=int, default=0)
    args = parser.parse_args()
    {"bulk": bulk, "tls-server": tls_server, "tls-clients": tls_clients, "services": services,
     "service-clients": service_clients}[args.role](args)


if __name__ == "__main__":
    main()
