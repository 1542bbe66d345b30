"""Make a large capture of real TLS bulk traffic at Ethernet-sized segments.

Real TLS (CPython ssl) over loopback inside a network namespace whose ``lo``
has MTU 1500 and segmentation offloads off, so every TCP segment is at most
1448 bytes as on an Ethernet link; captured by tcpdump. Needs root, ip(8),
ethtool(8) and tcpdump.

    python3 bench/make_capture.py --megabytes 200 --out /tmp/bulk.pcap
"""

import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

NETNS = "pts-bench"
PORT = 9443


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def setup_netns():
    for tool in ("ip", "ethtool", "tcpdump", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"make_capture: {tool} is needed (Debian: apt-get install iproute2 ethtool tcpdump openssl)")
    subprocess.run(["ip", "netns", "del", NETNS], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", NETNS)
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "mtu", "1500", "up")
    sh("ip", "netns", "exec", NETNS, "ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off",
       stdout=subprocess.DEVNULL)


def certificate(workdir):
    key, cert = os.path.join(workdir, "key.pem"), os.path.join(workdir, "cert.pem")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
       "-days", "2", "-subj", "/CN=localhost", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def child(args):
    """Runs inside the namespace: a TLS server sending bulk data to a TLS client."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(8)
    total = args.megabytes << 20
    per_connection = total // args.connections

    def serve():
        for _ in range(args.connections):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(100)
                chunk = os.urandom(16384)
                sent = 0
                while sent < per_connection:
                    tls.sendall(chunk)
                    sent += len(chunk)
                tls.unwrap()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    for _ in range(args.connections):
        with client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT))) as tls:
            tls.sendall(b"GET /bulk HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = 0
            while got < per_connection:
                data = tls.recv(1 << 16)
                if not data:
                    break
                got += len(data)
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
    thread.join(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--out", default="/tmp/pts-bulk.pcap")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if os.geteuid() != 0:
        sys.exit("make_capture: run as root (network namespace and capture)")
    setup_netns()
    with tempfile.TemporaryDirectory() as workdir:
        cert, key = certificate(workdir)
        dump = subprocess.Popen(["ip", "netns", "exec", NETNS, "tcpdump", "-i", "lo", "-s", "0", "-B", "65536",
                                 "-U", "-w", args.out, f"tcp port {PORT}"],
                                stderr=subprocess.PIPE, text=True)
        dump.stderr.readline()  # "listening on lo ..."
        time.sleep(0.5)
        sh("ip", "netns", "exec", NETNS, sys.executable, os.path.abspath(__file__), "--child",
           "--megabytes", str(args.megabytes), "--connections", str(args.connections),
           "--cert", cert, "--key", key)
        time.sleep(1)
        dump.send_signal(signal.SIGINT)
        report = dump.communicate(timeout=60)[1]
    subprocess.run(["ip", "netns", "del", NETNS])
    sys.stderr.write(report)
    print(f"{args.out}: {os.path.getsize(args.out) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
