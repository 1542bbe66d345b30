"""Make the benchmark's captures: real TLS on real sockets, at Ethernet-sized frames.

Three shapes (``--shape``), each written to /tmp by default with a sidecar
``FILE.json`` describing it (what was asked, what the capture holds, the TLS
ports, the clients' and servers' counters):

A ``bulk`` -> /tmp/pts-bulk.pcap
    200 TLS connections one after another, 1 MB of application data each from
    server to client (16 KiB records), close_notify both ways; TLS 1.3 and 1.2
    alternately; port 9443. About 216 MB, 185-190k packets. The earlier default
    (4 connections of 50 MiB, TLS 1.3 and 1.2) is ``--connections 4 --bytes 52428800``.

B ``fleet`` -> /tmp/pts-fleet.pcap
    20,000 short TLS connections, TLS 1.2 and 1.3 about half each, from 12
    client addresses to 3 server addresses x 3 ports (443 and 9443 RSA, 8443 ECDSA;
    9443 serves TLS 1.2 only); 2 client processes of 24 threads, one server process
    per port. Each: handshake, a small HTTP request, a response of 1-3 records
    (about half of them sent in 2-4 pieces with small pauses), then a close of
    one of the kinds in ``shapes.CLOSES`` (clean close_notify + FIN both ways, FIN
    without close_notify, client RST, server RST, client closing after the first
    of two records, a failed handshake, ...). About 120 MB, 400k packets; made in
    about 30 s.

C ``field`` -> /tmp/pts-field.pcap
    Two network namespaces joined by a veth pair (so the kernels really ARP; the
    neighbour caches are flushed every 1.5 s): 14,000 fleet TLS connections
    (ports 443, 8443 and 993, the last TLS 1.2 only) mixed, over the same couple
    of minutes, with plain HTTP over TCP (port 80, 1-3 requests per connection),
    an SSH-like TCP service (port 22), DNS over UDP (53), syslog over UDP (514) and
    ICMP echo, from 20 client addresses. The addresses are 198.18.0.0/24 (the
    benchmarking range, RFC 2544), on the veth pair only: the namespaces have no
    other link and no default route, so nothing leaves them. About 160 MB, 540k
    packets; made in about two minutes (the traffic is spread over ``--seconds``).

How: the traffic (``bench/shapes.py``) runs inside network namespaces made
here (``ip netns``), with MTU 1500 and TSO/GSO/GRO off on the captured
interface (bulk and fleet: the namespace's ``lo``; field: the server's end of
the veth pair), captured by tcpdump with a 128 MiB buffer. Every TLS byte is
OpenSSL's, through CPython's ssl module.

Checked after every capture, loudly (exit status 1):
  * tcpdump's "dropped by kernel" is 0 (otherwise the capture is made again, up to
    ``--attempts`` times);
  * every frame is at most 1514 bytes on the wire and captured whole;
  * the capture holds the TCP connections asked for (SYNs counted per port);
    fewer than 99 % of them is an error.

Needs root, ip(8), ethtool(8), tcpdump and openssl.

    python3 bench/make_capture.py --shape all
    python3 bench/make_capture.py --shape fleet --out /tmp/fleet.pcap --connections 2000
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES_PY = os.path.join(HERE, "shapes.py")
MAX_FRAME = 1514
NETNS = "pts-bench"
FIELD_SERVER_NS, FIELD_CLIENT_NS = "pts-field-srv", "pts-field-cli"
FIELD_SERVER_IF, FIELD_CLIENT_IF = "pts-veth-srv", "pts-veth-cli"
FIELD_SERVER = "198.18.0.1"
FIELD_SOURCES = [f"198.18.0.{10 + i}" for i in range(20)]

DEFAULTS = {
    "bulk": {"connections": 200, "bytes": 1_000_000},
    "fleet": {"connections": 20_000},
    "field": {"connections": 14_000, "seconds": 120, "http": 1_400, "ssh": 700, "dns": 46_000,
              "syslog": 25_000, "icmp": 12_000},
}
BULK_PORT = 9443
FLEET_PORTS = {443: "rsa", 8443: "ec", 9443: "rsa-tls12"}
FIELD_PORTS = {443: "rsa", 8443: "ec", 993: "rsa-tls12"}


class Failed(SystemExit):
    def __init__(self, msg):
        super().__init__(f"make_capture: FAILED: {msg}")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def netns_exec(ns, *cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def no_offloads(ns, dev):
    sh(*netns_exec(ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"),
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shown = subprocess.run(netns_exec(ns, "ethtool", "-k", dev), capture_output=True, text=True,
                           check=True).stdout
    for feature in ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"):
        if re.search(rf"^{feature}: on", shown, re.MULTILINE):
            raise Failed(f"{feature} still on for {dev} in {ns}")


def delete_namespaces():
    for ns in (NETNS, FIELD_SERVER_NS, FIELD_CLIENT_NS):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)


def loopback_namespace():
    """One namespace; its lo at MTU 1500, offloads off, 127.0.0.0/8 all local."""
    sh("ip", "netns", "add", NETNS)
    sh(*netns_exec(NETNS, "ip", "link", "set", "lo", "mtu", "1500", "up"))
    no_offloads(NETNS, "lo")
    return NETNS, "lo"


def veth_namespaces():
    """Two namespaces, a veth pair between them and nothing else: MTU 1500, offloads
    and checksum offload off (so the captured checksums are real)."""
    for ns in (FIELD_SERVER_NS, FIELD_CLIENT_NS):
        sh("ip", "netns", "add", ns)
        sh(*netns_exec(ns, "ip", "link", "set", "lo", "up"))
    sh("ip", "link", "add", FIELD_SERVER_IF, "netns", FIELD_SERVER_NS, "type", "veth",
       "peer", "name", FIELD_CLIENT_IF, "netns", FIELD_CLIENT_NS)
    for ns, dev, addrs in ((FIELD_SERVER_NS, FIELD_SERVER_IF, [FIELD_SERVER]),
                           (FIELD_CLIENT_NS, FIELD_CLIENT_IF, FIELD_SOURCES)):
        sh(*netns_exec(ns, "ip", "link", "set", dev, "mtu", "1500", "up"))
        for addr in addrs:
            sh(*netns_exec(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev))
        sh(*netns_exec(ns, "ethtool", "-K", dev, "tx", "off"), stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL)
        no_offloads(ns, dev)
    return FIELD_SERVER_NS, FIELD_SERVER_IF


def certificates(workdir):
    """{kind: (cert, key)}: RSA 2048 and ECDSA P-256, self-signed, made here."""
    out = {}
    for kind, keyopts in (("rsa", ["-newkey", "rsa:2048"]),
                          ("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])):
        key, cert = os.path.join(workdir, f"{kind}.key"), os.path.join(workdir, f"{kind}.pem")
        sh("openssl", "req", "-x509", *keyopts, "-nodes", "-keyout", key, "-out", cert, "-days", "2",
           "-subj", "/CN=*.fleet.example", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[kind] = (cert, key)
    return out


class Tcpdump:
    def __init__(self, ns, dev, out, bpf=()):
        self.proc = subprocess.Popen(netns_exec(ns, "tcpdump", "-i", dev, "-n", "-s", "0", "-B", "131072",
                                                "-w", out, *bpf),
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "listening on lo ..."
        if "listening" not in line:
            raise Failed(f"tcpdump did not start: {line}{self.proc.stderr.read()}")
        time.sleep(0.5)

    def stop(self):
        """Stop it; (its summary, packets dropped by the kernel)."""
        time.sleep(1)
        self.proc.send_signal(signal.SIGINT)
        text = self.proc.communicate(timeout=120)[1]
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        if dropped is None:
            raise Failed(f"no drop count from tcpdump:\n{text}")
        return text.strip(), int(dropped.group(1))


class Role:
    """A process of shapes.py in a namespace, reporting one JSON line of counters."""

    def __init__(self, ns, *args, server=False):
        self.proc = subprocess.Popen(netns_exec(ns, sys.executable, SHAPES_PY, *args),
                                     stdin=subprocess.PIPE if server else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True)
        if server:
            line = self.proc.stdout.readline()
            if line.strip() != "ready":
                raise Failed(f"{args[0]} did not start: {line!r}")

    def finish(self):
        out = self.proc.communicate(timeout=3600)[0]  # closes a server's stdin: it stops
        if self.proc.returncode:
            raise Failed(f"shapes.py exited {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])


def flush_neighbours(stop):
    """Forget the neighbours now and then, so that ARP keeps happening."""
    while not stop.wait(1.5):
        for ns, dev in ((FIELD_SERVER_NS, FIELD_SERVER_IF), (FIELD_CLIENT_NS, FIELD_CLIENT_IF)):
            subprocess.run(netns_exec(ns, "ip", "neigh", "flush", "dev", dev),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def traffic_bulk(ns, certs, opt):
    """The shape's traffic; (the clients' counters, the servers')."""
    cert, key = certs["rsa"]
    return [Role(ns, "bulk", "--connections", str(opt.connections), "--bytes", str(opt.bytes),
                 "--port", str(BULK_PORT), "--cert", cert, "--key", key).finish()], []


def tls_servers(ns, certs, ports, bind):
    out = []
    for port, kind in ports.items():
        cert, key = certs[kind.split("-")[0]]
        extra = ["--tls12-only"] if kind.endswith("tls12") else []
        out.append(Role(ns, "tls-server", "--bind", bind, "--port", str(port), "--cert", cert, "--key", key,
                        *extra, server=True))
    return out


def tls_client_roles(ns, ports, servers, sources, count, processes, seconds):
    # 443 and 8443 twice as often as the TLS 1.2-only port
    weighted = [str(p) for p, kind in ports.items() for _ in range(1 if kind.endswith("tls12") else 2)]
    tls12 = [str(p) for p, kind in ports.items() if kind.endswith("tls12")]
    share = [count // processes + (i < count % processes) for i in range(processes)]
    return [Role(ns, "tls-clients", "--servers", ",".join(servers), "--ports", ",".join(weighted),
                 "--tls12-only-ports", ",".join(tls12), "--sources", ",".join(sources),
                 "--count", str(n), "--threads", "24", "--seconds", str(seconds), "--seed", str(i + 1))
            for i, n in enumerate(share)]


def traffic_fleet(ns, certs, opt):
    servers = tls_servers(ns, certs, FLEET_PORTS, "0.0.0.0")
    clients = tls_client_roles(ns, FLEET_PORTS, ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
                               [f"127.0.1.{i}" for i in range(1, 13)], opt.connections, 2, 0)
    return [c.finish() for c in clients], [s.finish() for s in servers]


def traffic_field(ns, certs, opt):
    servers = tls_servers(FIELD_SERVER_NS, certs, FIELD_PORTS, FIELD_SERVER)
    servers.append(Role(FIELD_SERVER_NS, "services", "--bind", FIELD_SERVER, server=True))
    stop = threading.Event()
    flusher = threading.Thread(target=flush_neighbours, args=(stop,), daemon=True)
    flusher.start()
    clients = tls_client_roles(FIELD_CLIENT_NS, FIELD_PORTS, [FIELD_SERVER], FIELD_SOURCES,
                               opt.connections, 2, opt.seconds)
    clients.append(Role(FIELD_CLIENT_NS, "service-clients", "--server", FIELD_SERVER,
                        "--sources", ",".join(FIELD_SOURCES), "--seconds", str(opt.seconds),
                        *[a for k in ("http", "ssh", "dns", "syslog", "icmp")
                          for a in (f"--{k}", str(getattr(opt, k)))]))
    try:
        return [c.finish() for c in clients], [s.finish() for s in servers]
    finally:
        stop.set()
        flusher.join()


def inspect(path):
    """What the capture holds, checking every frame's size on the way."""
    stats = collections.Counter()
    syns = collections.defaultdict(set)
    big = []
    with open(path, "rb") as f:
        header = f.read(24)
        magic, = struct.unpack("<I", header[:4])
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            raise Failed(f"{path}: not a little-endian pcap")
        linktype, = struct.unpack("<I", header[20:24])
        if linktype != 1:
            raise Failed(f"{path}: link type {linktype}, not Ethernet")
        n = 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            _, _, incl, orig = struct.unpack("<IIII", rec)
            data = f.read(incl)
            n += 1
            stats["max_frame"] = max(stats["max_frame"], orig)
            if orig > MAX_FRAME or incl != orig:
                big.append((n, incl, orig))
            ethertype = data[12:14]
            if ethertype == b"\x08\x06":
                stats["arp"] += 1
            elif ethertype == b"\x86\xdd":
                stats["ipv6"] += 1
            elif ethertype == b"\x08\x00":
                ihl = (data[14] & 15) * 4
                proto = data[23]
                l4 = 14 + ihl
                if proto == 6:
                    stats["tcp"] += 1
                    sport, dport = struct.unpack_from("!HH", data, l4)
                    flags = data[l4 + 13]
                    if flags & 0x12 == 0x02:  # SYN without ACK: a connection attempt
                        syns[dport].add((data[26:30], sport, data[30:34], data[l4 + 4:l4 + 8]))  # a retransmitted SYN counts once
                elif proto == 17:
                    sport, dport = struct.unpack_from("!HH", data, l4)
                    stats[f"udp/{min(sport, dport)}"] += 1
                elif proto == 1:
                    stats["icmp"] += 1
                else:
                    stats[f"ip-proto-{proto}"] += 1
            else:
                stats["other"] += 1
    if big:
        raise Failed(f"{path}: {len(big)} frames over {MAX_FRAME} bytes or cut, first (frame, caplen, len): "
                     f"{big[:5]}")
    stats["frames"] = n
    return dict(stats), {port: len(s) for port, s in sorted(syns.items())}


def make(shape, out, opt):
    ports = {"bulk": {BULK_PORT: "rsa"}, "fleet": FLEET_PORTS, "field": FIELD_PORTS}[shape]
    traffic = {"bulk": traffic_bulk, "fleet": traffic_fleet, "field": traffic_field}[shape]
    for attempt in range(1, opt.attempts + 1):
        delete_namespaces()
        started = time.monotonic()
        try:
            ns, dev = veth_namespaces() if shape == "field" else loopback_namespace()
            with tempfile.TemporaryDirectory() as workdir:
                certs = certificates(workdir)
                dump = Tcpdump(ns, dev, out, () if shape == "field" else ("tcp",))
                try:
                    counters = traffic(ns, certs, opt)
                finally:
                    summary, dropped = dump.stop()
        finally:
            delete_namespaces()
        seconds = time.monotonic() - started
        print(f"make_capture: {shape}, attempt {attempt}: {seconds:.0f} s; tcpdump: "
              + "; ".join(summary.splitlines()[-3:]), file=sys.stderr)
        if dropped == 0:
            break
        print(f"make_capture: {dropped} packets dropped by the kernel, capturing again", file=sys.stderr)
    else:
        raise Failed(f"{shape}: tcpdump dropped packets in each of {opt.attempts} attempts")
    stats, syns = inspect(out)
    tls_connections = sum(n for port, n in syns.items() if port in ports)
    def summed(roles):
        total = collections.Counter()
        for c in roles:
            total.update({k: v for k, v in c.items() if k != "port"})
        return dict(sorted(total.items()))
    meta = {
        "shape": shape,
        "asked": {k: getattr(opt, k) for k in DEFAULTS[shape]},
        "tls_ports": sorted(ports),
        "bytes": os.path.getsize(out),
        "frames": stats["frames"],
        "max_frame": stats["max_frame"],
        "dropped_by_kernel": dropped,
        "tcp_connections_by_port": syns,
        "tls_connections": tls_connections,
        "protocols": {k: v for k, v in sorted(stats.items()) if k not in ("frames", "max_frame")},
        "client_counters": summed(counters[0]),
        "server_counters": summed(counters[1]),
        "seconds_to_make": round(seconds),
    }
    if tls_connections < 0.99 * opt.connections:
        raise Failed(f"{out}: {tls_connections} TLS connections in the capture, {opt.connections} asked")
    with open(out + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{out}: {meta['bytes'] / 1e6:.0f} MB, {meta['frames']:,} frames (largest {meta['max_frame']} B), "
          f"{tls_connections:,} TLS connections; TLS ports {meta['tls_ports']}; 0 dropped; "
          f"made in {seconds:.0f} s")
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("bulk", "fleet", "field", "all"), default="bulk")
    parser.add_argument("--out", help="output file (default /tmp/pts-SHAPE.pcap; not with --shape all)")
    parser.add_argument("--connections", type=int, help="TLS connections (default: 200, 20000, 14000)")
    parser.add_argument("--bytes", type=int, help="bulk: application bytes per connection (default 1000000)")
    parser.add_argument("--seconds", type=float, help="field: spread the traffic over about this long")
    for kind in ("http", "ssh", "dns", "syslog", "icmp"):
        parser.add_argument(f"--{kind}", type=int, help=f"field: {kind} exchanges")
    parser.add_argument("--attempts", type=int, default=3, help="captures made again while tcpdump drops")
    opt = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make_capture: run as root (network namespaces and capture)")
    for tool in ("ip", "ethtool", "tcpdump", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"make_capture: {tool} is needed (Debian: apt-get install iproute2 ethtool tcpdump openssl)")
    shapes = ("bulk", "fleet", "field") if opt.shape == "all" else (opt.shape,)
    if opt.out and len(shapes) > 1:
        sys.exit("make_capture: --out names one file: give one --shape")
    for shape in shapes:
        params = argparse.Namespace(**vars(opt))
        for key, value in DEFAULTS[shape].items():
            if getattr(params, key) is None:
                setattr(params, key, value)
        make(shape, opt.out or f"/tmp/pts-{shape}.pcap", params)


if __name__ == "__main__":
    main()
