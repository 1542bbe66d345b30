"""Time pcap-tls-split against tshark, a plain dpkt loop and cat, on one capture.

    python3 bench/run.py                       # makes /tmp/pts-bulk.pcap if missing (root)
    python3 bench/run.py --capture big.pcap --runs 5

Whole processes, alternating, several runs; prints each one's median wall time,
its ratio to ours and its peak memory (the child's maximum resident set size,
from wait4). Also: ours through standard input, ours on the capture doubled
(the same traffic twice, later in time), to show that memory stays flat, and
ours on the same capture written as pcapng.
"""

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

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


def measure(cmd, stdin_path=None):
    """(wall seconds, peak RSS in MB) of one run of cmd."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if stdin_path:
        stdin.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench: {cmd[0]} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024


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
    import struct
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", default="/tmp/pts-bulk.pcap")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=9443, help="TLS port for tshark's decode-as")
    parser.add_argument("--double", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--pcapng", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.double:
        double(*args.double)
        return
    if args.pcapng:
        as_pcapng(*args.pcapng)
        return
    if not os.path.exists(args.capture):
        subprocess.run([sys.executable, os.path.join(HERE, "make_capture.py"), "--out", args.capture],
                       check=True)
    # compiled once, as an installed package is (pip compiles on install): the
    # timings are not about compiling the sources at every start
    compileall.compile_dir(os.path.join(ROOT, "pcap_tls_split"), quiet=1)
    ours = [sys.executable, "-m", "pcap_tls_split", "analyze", "--all", "--format", "json"]
    contenders = {
        "pcap-tls-split analyze": (ours + [args.capture], None),
        "pcap-tls-split analyze - (stdin)": (ours + ["-"], args.capture),
        "dpkt loop (Ethernet/IP/TCP)": ([sys.executable, "-c", DPKT_LOOP, args.capture], None),
        "cat (I/O floor)": (["cat", args.capture], None),
    }
    if shutil.which("tshark"):
        contenders["tshark TLS record lengths"] = (
            ["tshark", "-n", "-r", args.capture, "-d", f"tcp.port=={args.port},tls",
             "-T", "fields", "-e", "tls.record.length"], None)
    # made in a child: a forked child's peak RSS counts its parent's memory at fork
    doubled = args.capture + ".double.pcap"
    if not os.path.exists(doubled):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--double", args.capture, doubled],
                       check=True)
    contenders["pcap-tls-split analyze, capture doubled"] = (ours + [doubled], None)
    pcapng = args.capture + ".pcapng"
    if not os.path.exists(pcapng):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--pcapng", args.capture, pcapng],
                       check=True)
    contenders["pcap-tls-split analyze, capture as pcapng"] = (ours + [pcapng], None)

    results = {name: [] for name in contenders}
    for _ in range(args.runs):
        for name, (cmd, stdin) in contenders.items():  # alternating
            results[name].append(measure(cmd, stdin))
    base = statistics.median(w for w, _ in results["pcap-tls-split analyze"])
    size = os.path.getsize(args.capture)
    print(f"capture: {args.capture}, {size / 1e6:.0f} MB; {args.runs} runs each, alternating; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'':42} {'median s':>9} {'x ours':>7} {'peak MB':>8}")
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        peak = max(m for _, m in runs)
        print(f"{name:42} {wall:9.2f} {wall / base:7.1f} {peak:8.0f}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
