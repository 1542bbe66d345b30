"""Golden outputs: the CLI's table, JSON and CSV on a few samples, compared whole.

    python3 tests/golden.py --update     # (make golden) write tests/golden/ anew

tests/test_golden.py runs each case and compares its stdout and exit status
with tests/golden/CASE.out and CASE.status. Run from the project root, on
relative paths, so the outputs do not depend on where the clone lives.
Regenerate after a change that means to alter the output, and read the diff.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"

CASES = {
    "analyze-table": ["analyze", "--all", "samples/field-bug-tls12.pcap", "samples/split-header.pcap",
                      "samples/clean-tls12-v6.pcapng"],
    "analyze-json": ["analyze", "--all", "--format", "json", "samples/field-bug-tls13.pcap",
                     "samples/half-record.pcap"],
    "analyze-csv": ["analyze", "--all", "--format", "csv", "samples/field-bug-tries.pcap"],
    "analyze-jsonl": ["analyze", "--format", "jsonl", "samples/client-gives-up-waiting.pcap"],
    "records-table": ["records", "samples/split-header.pcap"],
    "records-json": ["records", "--format", "json", "samples/server-truncates.pcap"],
    "show-field-bug-tls12": ["show", "samples/field-bug-tls12.pcap", "--stream", "0"],
    "show-split-header": ["show", "samples/split-header.pcap", "--stream", "0", "--width", "120"],
    "show-half-record": ["show", "samples/half-record.pcap", "--stream", "0", "--width", "72"],
    "show-field-bug-tls13": ["show", "samples/field-bug-tls13.pcap", "--color", "always"],
    "show-tries-flagged": ["show", "samples/field-bug-tries.pcap", "--finding",
                           "close_before_pending_records"],
    "show-bulk-folded": ["show", "samples/straddling-healthy.pcap", "--stream", "0"],
    "by-server-table": ["analyze", "--by", "server", "samples/field-bug-70-tries.pcap",
                        "samples/split-header.pcap", "samples/field-bug-tls13.pcap"],
    "by-client-json": ["analyze", "--by", "client", "--format", "json", "samples/field-bug-tries.pcap",
                       "samples/half-record.pcap", "samples/server-closes-keepalive-race.pcap"],
    "by-server-csv": ["analyze", "--by", "server", "--format", "csv", "samples/field-bug-tries.pcap",
                      "samples/straddling-healthy.pcap"],
}


def run(case):
    """(stdout, exit status) of one case."""
    env = dict(os.environ, COLUMNS="120")
    proc = subprocess.run([sys.executable, "-m", "pcap_tls_split", *CASES[case], "-j", "1"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    return proc.stdout, proc.returncode


def update():
    GOLDEN.mkdir(exist_ok=True)
    for case in CASES:
        out, status = run(case)
        (GOLDEN / f"{case}.out").write_text(out)
        (GOLDEN / f"{case}.status").write_text(f"{status}\n")
        print(f"{case}: exit {status}, {len(out.splitlines())} lines")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    update()
