"""A live capture: tcpdump or dumpcap on an interface, writing pcap to a pipe packet
by packet, for the reader of standard input.

``LiveCapture(interface, bpf).start()`` runs whichever capturer is installed
(tcpdump first: ``-U --immediate-mode -w -``, each packet written as it comes;
else dumpcap ``-w -``, which flushes each packet into a pipe), in a session of
its own so that a terminal's Ctrl-C reaches only us, and returns once it says
it is capturing; its standard output is the capture. ``stop()`` ends it (SIGINT,
then SIGKILL) and is safe to call on every exit path, any number of times.
"""

import os
import re
import shutil
import signal
import subprocess
import threading

TOOLS = ("tcpdump", "dumpcap")
MARKERS = {"tcpdump": "listening on", "dumpcap": "Capturing on"}
INSTALL = "install tcpdump (Debian/Ubuntu: apt-get install tcpdump) or dumpcap (wireshark-common)"
START_TIMEOUT = 15.0
SETTLE = 0.3


class LiveUnavailable(Exception):
    """The live capture cannot be made (one line saying why and what to do)."""


def find_capturer():
    """(tool, path) of the capturer to run: ``$PCAP_TLS_SPLIT_TCPDUMP`` or
    ``$PCAP_TLS_SPLIT_DUMPCAP`` when set, else tcpdump, else dumpcap."""
    for tool in TOOLS:
        path = os.environ.get(f"PCAP_TLS_SPLIT_{tool.upper()}")
        if path:
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise LiveUnavailable(f"{tool} not found at {path} (from $PCAP_TLS_SPLIT_{tool.upper()})")
            return tool, path
    for tool in TOOLS:
        path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                           if os.access(p, os.X_OK)), None)
        if path:
            return tool, path
    raise LiveUnavailable(f"neither tcpdump nor dumpcap found: {INSTALL}")


class LiveCapture:
    """One capturer process on ``interface`` with an optional BPF capture filter."""

    def __init__(self, interface, bpf=None):
        self.interface = interface
        self.bpf = bpf
        self.tool = None
        self.proc = None
        self.lines = []            # what the capturer said on its standard error
        self.interrupted = False   # we asked it to stop
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def command(self, tool, exe):
        if tool == "tcpdump":
            return [exe, "-i", self.interface, "-U", "--immediate-mode", "-w", "-"] + \
                ([self.bpf] if self.bpf else [])
        return [exe, "-i", self.interface, "-q", "-w", "-"] + (["-f", self.bpf] if self.bpf else [])

    def start(self):
        """Start the capturer; returns its standard output (binary, the pcap stream).
        ``LiveUnavailable`` when it cannot be run or does not start capturing."""
        self.tool, exe = find_capturer()
        try:
            self.proc = subprocess.Popen(self.command(self.tool, exe), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except OSError as exc:
            raise LiveUnavailable(f"cannot run {exe}: {exc.strerror or exc}") from None
        marker = MARKERS[self.tool]

        def listen():
            try:
                for raw in self.proc.stderr:
                    line = raw.decode("utf-8", "replace").rstrip()
                    self.lines.append(line)
                    if marker in line:
                        self._ready.set()
            except (OSError, ValueError):
                pass
            self._ready.set()

        threading.Thread(target=listen, daemon=True).start()
        self._ready.wait(START_TIMEOUT)
        try:
            self.proc.wait(SETTLE)    # dumpcap says it is capturing before it opens the device
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is not None or not any(marker in line for line in self.lines):
            said = self.said() or "no message"
            self.stop()
            raise LiveUnavailable(f"{self.tool} cannot capture on {self.interface}: {said}")
        return self.proc.stdout

    def said(self):
        """The capturer's own words, on one line."""
        return "; ".join(line.strip() for line in self.lines
                         if line.strip() and not line.startswith(MARKERS.get(self.tool, "\0")))

    def interrupt(self):
        """Ask the capturer to stop (it writes out what it has and exits: end of the pipe)."""
        if self.proc is not None and self.proc.poll() is None:
            self.interrupted = True
            try:
                self.proc.send_signal(signal.SIGINT)
            except OSError:
                pass

    def stop(self):
        """End the capturer, whatever state it is in (idempotent)."""
        with self._lock:
            proc = self.proc
            if proc is None:
                return
            if proc.poll() is None:
                self.interrupt()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def failure(self):
        """What the capturer said when it stopped on its own with an error (None: it did not)."""
        proc = self.proc
        if proc is None or proc.poll() is None or self.interrupted or proc.returncode == 0:
            return None
        return self.said() or f"exit status {proc.returncode}"

    def drops(self):
        """Packets the capturer said it dropped (0: none said)."""
        text = "\n".join(self.lines)
        found = re.findall(r"(\d+) packets? dropped by (?:kernel|interface)", text) + \
            re.findall(r"received/dropped on interface .*?: \d+/(\d+)", text)
        return sum(int(n) for n in found)
