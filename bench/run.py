"""Time pcap-tls-split against tshark, a plain dpkt loop and cat, on three shapes of capture.

    python3 bench/run.py                        # all three shapes; makes missing captures (root)
    python3 bench/run.py --shape fleet --runs 3
    python3 bench/run.py --shape bulk --capture big.pcap --port 4433
    python3 bench/run.py --open-connections 20000

The shapes (made by bench/make_capture.py, real TLS on real sockets, captured
by tcpdump at MTU 1500 with offloads off; each capture has a FILE.json beside it
saying what it holds and its TLS ports):

  bulk   /tmp/pts-bulk.pcap   200 TLS connections of 1 MB each
  fleet  /tmp/pts-fleet.pcap  20,000 short TLS 1.2/1.3 connections, closes of every kind
  field  /tmp/pts-field.pcap  14,000 TLS connections among HTTP, SSH-like, DNS, syslog, ICMP, ARP

For each shape, one alternating run (each contender once per round, --runs
rounds) of whole processes: ours with --format jsonl (the reference) and json
(one process, as by default for one capture), ours with -j 2 (the capture's
connections split across two workers), ours from standard input, ours listing
every record (records --format jsonl: what tshark below lists, one line each), the
same three runs (jsonl, -j 2, records) on the compiled build (the tree built by
setup.py with Cython into /tmp/pts-compiled; left out with --pure, or where it
does not build), a plain dpkt decode loop, cat, and tshark listing TLS record
lengths (decode-as TLS on every TLS port of the capture). Bulk also has ours
on the capture doubled (the same traffic again, later, other client ports: memory
stays flat) and on the capture written as pcapng. Prints each one's median wall
time, its ratio to ours and its peak memory (the child's maximum resident set
size, from wait4), then tshark's time over ours.

--open-connections N measures the state kept per open connection instead: it
writes (synthetically; one real ClientHello made by CPython's ssl) a capture in
which N TCP connections are all open at once (SYN, SYN-ACK, ACK, ClientHello,
ACK; then, once all N are open, each closes with FIN both ways), the same
packets with each connection closed before the next opens, and a capture of one
such connection as the baseline (start-up and imports), pure and compiled; it reports
(peak RSS all open - peak RSS baseline) / N, and (all open - one by one) / N, the
part that is there only while the connections are open.
"""

import argparse
import compileall
import json
import os
import shutil
import ssl
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHAPES = ("bulk", "fleet", "field")
SPLIT_JOBS = 2

DPKT_LOOP = """
import sys, dpkt
n = 0
with open(sys.argv[1], 'rb') as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
            n += len(ip.data.data)
print(n)
"""


COMPILED = "/tmp/pts-compiled"   # the package built with its compiled modules (compiled_build)


def measure(cmd, stdin_path=None):
    """(wall seconds, peak RSS in MB) of one run of cmd (a list; or (list, env))."""
    cmd, env = cmd if isinstance(cmd, tuple) else (cmd, None)
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if stdin_path:
        stdin.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024


def ours(fmt):
    return [sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format", fmt]


def compiled_build():
    """The package built from this tree with its compiled modules (setup.py, Cython),
    in COMPILED/lib; None, said why, where it does not build (no Cython, no compiler)."""
    lib = os.path.join(COMPILED, "lib")
    env = dict(os.environ, PCAP_TLS_SPLIT_COMPILE="1")
    shutil.rmtree(COMPILED, ignore_errors=True)
    made = subprocess.run([sys.executable, "setup.py", "-q", "build", "--build-base",
                           os.path.join(COMPILED, "build"), "--build-lib", lib],
                          env=env, capture_output=True, text=True)
    if made.returncode:
        last = (made.stderr.strip().splitlines() or ["?"])[-1]
        print(f"bench: no compiled build ({last}): its rows are left out", file=sys.stderr)
        return None
    compileall.compile_dir(lib, quiet=1)
    return lib


def compiled(cmd, lib):
    """cmd (python -m pcap_tls_split ...) run on the compiled build at lib, not on this
    tree's modules (-P: the working directory is not put first on the path)."""
    return [cmd[0], "-P"] + cmd[1:], dict(os.environ, PYTHONPATH=lib)


def _captures():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.path.insert(0, ROOT)
    import captures  # the test suite's capture writers
    return captures


def as_pcapng(path, out):
    """The same capture written as pcapng (what dumpcap and Wireshark write)."""
    captures = _captures()
    captures.write_pcapng(out, captures.read_frames(path), tsresol=6)


def double(path, out):
    """The capture with its packets repeated once more, shifted in time and port."""
    captures = _captures()
    frames = captures.read_frames(path)
    shift = frames[-1][0] - frames[0][0] + 1
    more = []
    for t, lt, data, n in frames:
        data = bytearray(data)
        if lt == 1 and data[12:14] == b"\x08\x00":
            ports = 14 + (data[14] & 15) * 4
            sport, dport = struct.unpack_from("!HH", data, ports)
            struct.pack_into("!HH", data, ports, sport ^ 1 if sport > 10000 else sport,
                             dport ^ 1 if dport > 10000 else dport)
        more.append((t + shift, lt, bytes(data), n))
    captures.write_pcap(out, frames + more)


def derived(kind, capture):
    """The doubled or pcapng file made from capture (made again when older than it).
    Made in a child: a forked child's peak RSS counts its parent's memory at fork."""
    out = capture + (".double.pcap" if kind == "double" else ".pcapng")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(capture):
        subprocess.run([sys.executable, os.path.abspath(__file__), f"--{kind}", capture, out], check=True)
    return out


def ensure_capture(shape, path):
    """The capture's description (FILE.json), making the capture first if it or its
    description is missing (a file from before the shapes has none)."""
    meta = path + ".json"
    if not (os.path.exists(path) and os.path.exists(meta)):
        made = subprocess.run([sys.executable, os.path.join(HERE, "make_capture.py"), "--shape", shape,
                               "--out", path])
        if made.returncode:       # (make_capture said why on stderr)
            raise SystemExit(f"bench: the {shape} capture could not be made: {path}")
    with open(meta) as f:
        return json.load(f)


def describe(shape, path, meta):
    size = os.path.getsize(path)
    if not meta:
        return f"{shape}: {path}, {size / 1e6:.0f} MB"
    other = {k: v for k, v in meta["protocols"].items() if k != "tcp"}
    tcp = sum(meta["tcp_connections_by_port"].values())
    line = (f"{shape}: {path}, {size / 1e6:.0f} MB, {meta['frames']:,} frames (largest {meta['max_frame']} B), "
            f"{meta['tls_connections']:,} TLS connections ({tcp:,} TCP), TLS ports "
            f"{','.join(map(str, meta['tls_ports']))}")
    versions = {k: v for k, v in meta["client_counters"].items() if k.startswith("tls1.")}
    if versions:
        line += "; " + ", ".join(f"TLS {k[3:]} {v:,}" for k, v in sorted(versions.items()))
    if other:
        line += "\n  other frames: " + ", ".join(f"{k} {v:,}" for k, v in other.items())
    return line


def bench_shape(shape, path, meta, tls_ports, runs, lib):
    contenders = {
        "ours --format jsonl": (ours("jsonl") + [path], None),
        "ours --format json": (ours("json") + [path], None),
        f"ours -j {SPLIT_JOBS} --format jsonl (split)": (ours("jsonl") + ["-j", str(SPLIT_JOBS), path], None),
        "ours --format jsonl - (stdin)": (ours("jsonl") + ["-"], path),
        "ours records --format jsonl": ([sys.executable, "-m", "pcap_tls_split", "records", "--format",
                                         "jsonl", path], None),
        "dpkt loop (Ethernet/IP/TCP)": ([sys.executable, "-c", DPKT_LOOP, path], None),
        "cat (I/O floor)": (["cat", path], None),
    }
    if lib is not None:
        contenders.update({
            "compiled --format jsonl": (compiled(ours("jsonl") + [path], lib), None),
            f"compiled -j {SPLIT_JOBS} --format jsonl (split)": (
                compiled(ours("jsonl") + ["-j", str(SPLIT_JOBS), path], lib), None),
            "compiled records --format jsonl": (compiled([sys.executable, "-m", "pcap_tls_split", "records",
                                                          "--format", "jsonl", path], lib), None)})
    if shutil.which("tshark"):
        decode_as = [a for p in tls_ports for a in ("-d", f"tcp.port=={p},tls")]
        contenders["tshark TLS record lengths"] = (
            ["tshark", "-n", "-r", path, *decode_as, "-T", "fields", "-e", "tls.record.length"], None)
    if shape == "bulk":
        contenders["ours --format jsonl, capture doubled"] = (ours("jsonl") + [derived("double", path)], None)
        contenders["ours --format jsonl, capture as pcapng"] = (ours("jsonl") + [derived("pcapng", path)],
                                                                None)
    results = {name: [] for name in contenders}
    for _ in range(runs):
        for name, (cmd, stdin) in contenders.items():  # alternating
            results[name].append(measure(cmd, stdin))
    print()
    print(describe(shape, path, meta))
    print(f"{runs} runs each, alternating; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    base = statistics.median(w for w, _ in results["ours --format jsonl"])
    print(f"{'':42} {'median s':>9} {'x ours':>7} {'peak MB':>8}")
    medians = {}
    for name, rows in results.items():
        medians[name] = wall = statistics.median(w for w, _ in rows)
        peak = max(m for _, m in rows)
        print(f"{name:42} {wall:9.2f} {wall / base:7.1f} {peak:8.0f}")
    if "tshark TLS record lengths" in medians:
        t = medians["tshark TLS record lengths"]
        split = medians[f"ours -j {SPLIT_JOBS} --format jsonl (split)"]
        print(f"tshark / ours: {t / base:.1f}x (jsonl), {t / medians['ours --format json']:.1f}x (json), "
              f"{t / split:.1f}x (jsonl, -j {SPLIT_JOBS}), "
              f"{t / medians['ours records --format jsonl']:.1f}x (records, like for like)")
        if lib is not None:
            print(f"tshark / ours compiled: {t / medians['compiled --format jsonl']:.1f}x (jsonl), "
                  f"{t / medians[f'compiled -j {SPLIT_JOBS} --format jsonl (split)']:.1f}x "
                  f"(jsonl, -j {SPLIT_JOBS}), "
                  f"{t / medians['compiled records --format jsonl']:.1f}x (records)")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- open connections

def client_hello():
    """One real ClientHello record, as CPython's ssl (OpenSSL) sends it."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="open.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_frame(src, sport, dst, dport, seq, ack, flags, payload=b""):
    """Ethernet/IPv4/TCP with correct checksums."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                      64240, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp


def open_connections_capture(path, n, at_once):
    """n connections to 198.19.0.1:443 from 198.18.x.y, each SYN, SYN-ACK, ACK, ClientHello,
    ACK, then FIN both ways and the last ACK: all opened before any closes (at_once),
    or each closed before the next opens."""
    captures = _captures()
    hello = client_hello()
    server = bytes([198, 19, 0, 1])
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    frames = []
    clock = [1_700_000_000.0]
    # one by one: a millisecond between packets, so that each connection is over
    # (its linger passed) a few hundred connections later
    step = 1e-5 if at_once else 1e-3

    def emit(frame):
        clock[0] += step
        frames.append((clock[0], 1, frame, len(frame)))

    def addr(i):
        return bytes([198, 18, (i >> 8) & 0xFF, i & 0xFF]), 20000 + (i >> 16)

    def opening(i):
        client, port = addr(i)
        c, s = 1000 + i, 5000 + i
        emit(tcp_frame(client, port, server, 443, c, 0, SYN))
        emit(tcp_frame(server, 443, client, port, s, c + 1, SYN | ACK))
        emit(tcp_frame(client, port, server, 443, c + 1, s + 1, ACK))
        emit(tcp_frame(client, port, server, 443, c + 1, s + 1, PSH | ACK, hello))
        emit(tcp_frame(server, 443, client, port, s + 1, c + 1 + len(hello), ACK))

    def closing(i):
        client, port = addr(i)
        c, s = 1000 + i + 1 + len(hello), 5000 + i + 1
        emit(tcp_frame(client, port, server, 443, c, s, FIN | ACK))
        emit(tcp_frame(server, 443, client, port, s, c + 1, FIN | ACK))
        emit(tcp_frame(client, port, server, 443, c + 1, s + 1, ACK))

    if at_once:
        for i in range(n):
            opening(i)
        for i in range(n):
            closing(i)
    else:
        for i in range(n):
            opening(i)
            closing(i)
    captures.write_pcap(path, frames)


def bench_open_connections(n, runs, lib):
    variants = {"baseline": (1, True), "one by one": (n, False), "all open": (n, True)}
    paths = {}
    for name, (count, at_once) in variants.items():
        path = paths[name] = f"/tmp/pts-open-{count}-{'at-once' if at_once else 'one-by-one-ms'}.pcap"
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.abspath(__file__), "--write-open", str(count),
                            "1" if at_once else "0", path], check=True)
    builds = {"ours": lambda cmd: cmd}
    if lib is not None:
        builds["compiled"] = lambda cmd: compiled(cmd, lib)
    results = {}
    for _ in range(runs):
        for build, how in builds.items():
            for fmt in ("jsonl", "json"):
                for name, path in paths.items():
                    results.setdefault((build, fmt, name), []).append(measure(how(ours(fmt) + [path])))
    print()
    print(f"open connections: {n:,} TCP connections (SYN, SYN-ACK, ACK, ClientHello, ACK, ... FIN both "
          f"ways), {os.path.getsize(paths['all open']) / 1e6:.0f} MB; {runs} runs each, alternating")
    print("  all open: every connection opened before any closes; one by one: the same packets, each")
    print("  connection closed before the next opens; baseline: one connection (start-up, imports)")
    print(f"{'peak MB (median)':22} {'baseline':>9} {'one by one':>11} {'all open':>9} "
          f"{'(all open - baseline) / N':>26} {'(all open - one by one) / N':>28}")
    for build in builds:
        for fmt in ("jsonl", "json"):
            peak = {name: statistics.median(m for _, m in results[build, fmt, name]) for name in variants}
            per_all = (peak["all open"] - peak["baseline"]) * 1024 / n
            per_open = (peak["all open"] - peak["one by one"]) * 1024 / n
            print(f"{build + ' --format ' + fmt:22} {peak['baseline']:9.1f} {peak['one by one']:11.1f} "
                  f"{peak['all open']:9.1f} {per_all:23.2f} KB {per_open:25.2f} KB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES + ("all",), default="all")
    parser.add_argument("--capture", help="time this file instead of /tmp/pts-SHAPE.pcap (one --shape)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, action="append", default=[],
                        help="a TLS port for tshark's decode-as, besides those in the capture's .json")
    parser.add_argument("--open-connections", type=int, metavar="N",
                        help="measure the memory per open connection with N connections open at once")
    parser.add_argument("--pure", action="store_true",
                        help="leave out the compiled build (by default built into " + COMPILED + ")")
    parser.add_argument("--double", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--pcapng", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--write-open", nargs=3, metavar=("N", "AT_ONCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.double:
        double(*args.double)
        return
    if args.pcapng:
        as_pcapng(*args.pcapng)
        return
    if args.write_open:
        open_connections_capture(args.write_open[2], int(args.write_open[0]), args.write_open[1] == "1")
        return
    # compiled once, as an installed package is (pip compiles on install): the
    # timings are not about compiling the sources at every start
    compileall.compile_dir(os.path.join(ROOT, "pcap_tls_split"), quiet=1)
    lib = None if args.pure else compiled_build()
    if args.open_connections:
        bench_open_connections(args.open_connections, args.runs, lib)
        return
    shapes = SHAPES if args.shape == "all" else (args.shape,)
    if args.capture and len(shapes) > 1:
        parser.error("--capture names one file: give one --shape")
    for shape in shapes:
        path = args.capture or f"/tmp/pts-{shape}.pcap"
        if args.capture and not os.path.exists(path + ".json"):
            meta = None
        else:
            meta = ensure_capture(shape, path)
        ports = sorted(set((meta["tls_ports"] if meta else [443]) + args.port))
        bench_shape(shape, path, meta, ports, args.runs, lib)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
