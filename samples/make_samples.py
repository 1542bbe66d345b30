#!/usr/bin/env python3
"""Regenerate the sample captures in this directory with the lab.

Each sample is one scenario of ``pcap-tls-split lab`` (pcap_tls_split/lab/scenarios.py)
captured on loopback, i.e. what ``pcap-tls-split lab run SCENARIO`` does, with a
fixed server port per sample (8401-8429) and the file names the test suite
knows. The lab checks every capture against its scenario (re-capturing up to 3
times when timing on a busy machine spoiled it), and this script then rewrites
``expected.json`` from the scenarios' expected verdicts plus the measured layout.

Usage:
    python3 samples/make_samples.py                 # regenerate everything (root, ~2.5 min)
    python3 samples/make_samples.py --only NAME     # one sample (repeatable; file stem or scenario)
    python3 samples/make_samples.py --show [NAME]   # print the layout of the captures as they are
    python3 samples/make_samples.py --list

Needs: root (or capture capabilities), tcpdump, dumpcap (for the pcapng one);
tshark only for --show's decrypted column. The TLS server uses the lab's bundled
TEST-ONLY certificate and key (pcap_tls_split/lab/cert.py).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from pcap_tls_split.lab.capture import CaptureUnavailable, CheckFailed, describe, read_layout  # noqa: E402
from pcap_tls_split.lab.scenarios import run_scenario  # noqa: E402

# file, scenario, server port, options
SAMPLES = [
    ("field-bug-tls12.pcap", "split-response-client-drops", 8401, {}),
    ("field-bug-tls13.pcap", "split-response-client-drops-tls13", 8402, {}),
    ("field-bug-tries.pcap", "field-bug-tries", 8403, {}),
    ("half-record.pcap", "client-closes-inside-record", 8404, {}),
    ("split-header.pcap", "split-header-healthy", 8405, {}),
    ("server-truncates.pcap", "server-truncates", 8406, {}),
    ("straddling-healthy.pcap", "straddling-healthy", 8407, {}),
    ("fast-close.pcap", "fast-close", 8408, {}),
    ("tls13-preconnect.pcap", "tls13-preconnect", 8409, {}),
    ("clean-tls12-v6.pcapng", "healthy-tls12", 8410, {"ipv6": True, "pcapng": True}),
    ("clean-tls13.pcap", "healthy-tls13", 8411, {"nano": True}),
    ("client-rst.pcap", "client-resets-on-boundary", 8412, {}),
    ("client-rst-mid-record.pcap", "client-resets-mid-record", 8413, {}),
    ("client-gives-up-waiting.pcap", "client-gives-up-waiting", 8414, {}),
    ("client-closes-without-waiting.pcap", "client-closes-without-waiting", 8415, {}),
    ("server-closes-keepalive-race.pcap", "server-closes-keepalive-race", 8416, {}),
    ("client-truncates-request.pcap", "client-truncates-request", 8417, {}),
    ("client-closes-during-handshake.pcap", "client-closes-during-handshake", 8418, {}),
    ("no-close-notify.pcap", "no-close-notify", 8419, {}),
    ("client-resets-after-response.pcap", "client-resets-after-response", 8420, {}),
    ("fast-close-client-stops-at-fin.pcap", "fast-close-client-stops-at-fin", 8421, {}),
    ("capture-ends-inside-record.pcap", "capture-ends-inside-record", 8422, {}),
    ("field-bug-70-tries.pcap", "field-bug-70-tries", 8423, {}),
    ("server-resets-after-clean-close.pcap", "server-resets-after-clean-close", 8424, {}),
    ("farewell-race-tls12.pcap", "farewell-race-tls12", 8425, {}),
    ("farewell-race-tls13.pcap", "farewell-race-tls13", 8426, {}),
    ("preconnect-abandoned.pcap", "preconnect-abandoned", 8427, {}),
    ("one-sided-capture.pcap", "one-sided-capture", 8428, {}),
    ("client-leaves-data-unread.pcap", "client-leaves-data-unread", 8429, {}),
]
OPTION_FLAGS = {"ipv6": "--ipv6", "pcapng": "--pcapng", "nano": "--nanosecond"}


def stem(file):
    return file.rsplit(".", 1)[0]


def lab_command(scenario, options):
    return " ".join(["pcap-tls-split lab run", scenario] + [OPTION_FLAGS[k] for k, v in options.items() if v])


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tshark_info(path, port):
    """frame -> tshark's Info column, decrypted with the key log ({} without tshark)."""
    keys = os.path.join(HERE, stem(os.path.basename(path)) + ".keys")
    cmd = ["tshark", "-r", path, "-d", "tcp.port==%d,tls" % port, "-T", "fields", "-E", "separator=\t",
           "-e", "frame.number", "-e", "_ws.col.Info"]
    if os.path.exists(keys):
        cmd[3:3] = ["-o", "tls.keylog_file:" + keys]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
    except OSError:
        return {}
    info = {}
    for line in out.splitlines():
        n, _, i = line.partition("\t")
        if n.isdigit():
            info[int(n)] = i
    return info


def select(names):
    if not names:
        return SAMPLES
    chosen = []
    for n in names:
        hit = [s for s in SAMPLES if n in (s[0], stem(s[0]), s[1])]
        if not hit:
            raise SystemExit("unknown sample %r; --list shows them" % n)
        chosen += [s for s in hit if s not in chosen]
    return chosen


def write_expected(results):
    path = os.path.join(HERE, "expected.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    old.update(results)
    doc = {s[0]: old[s[0]] for s in SAMPLES if s[0] in old}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", help="only this sample (repeatable)")
    ap.add_argument("--show", nargs="*", metavar="NAME", help="print the layout of existing captures")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for file, scenario, port, options in SAMPLES:
            print("%-38s %-36s %s" % (file, scenario, lab_command(scenario, options)))
        return
    if a.show is not None:
        for file, scenario, port, options in select(a.show):
            path = os.path.join(HERE, file)
            describe(path, read_layout(path), sys.stdout, tshark_info(path, port))
        return
    results, mismatched = {}, []
    for file, scenario, port, options in select(a.only):
        try:
            res = run_scenario(scenario, HERE, stem=stem(file), port=port, log=log, write_expected=False,
                               **options)
        except CaptureUnavailable as e:
            raise SystemExit(str(e))
        except CheckFailed as e:
            raise SystemExit(str(e))
        describe(res.capture, res.conns, sys.stderr)
        entry = dict(res.expected)
        entry["lab"] = lab_command(scenario, options)
        results[file] = entry
        if res.problems:
            mismatched.append(file)
            log("[%s] the analyzer's verdict differs from the expected one:\n  %s"
                % (file, "\n  ".join(res.problems)))
        else:
            log("[%s] the analyzer's verdict is the expected one" % file)
    write_expected(results)
    if mismatched:
        log("verdicts that differ from the expectation: %s" % ", ".join(mismatched))


if __name__ == "__main__":
    main()
