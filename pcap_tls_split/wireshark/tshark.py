"""tshark, run through pyshark: where it is, the preferences it always gets, the process.

pyshark's machinery is kept inside ``tshark_packets``: our own event loop,
closed each run; tshark's exit awaited before pyshark's cleanup (whose kill
would race the child watcher); a timeout after which tshark is killed and
reaped; pyshark's exceptions turned into ``TsharkFailed``. tshark runs with
fixed preferences (``PREFS``), two passes, an empty personal configuration and
the C locale, so nobody's profile changes the answer.

Each tshark runs in a process group of its own, noted while it runs; inside
``ended_on_signals`` a SIGTERM, SIGHUP or SIGINT of this process kills those
groups before anything else, then ends the process the usual way (SystemExit
with status 128 + the signal; KeyboardInterrupt for SIGINT), so that temporary
files are removed too. While pyshark's event loop runs in the main thread, the
signal is only noted: an exception raised in the middle of pyshark's own code
(between the start of a child and the task that reads its stderr) would leave a
transport and a coroutine behind, reported on stderr when the loop goes; tshark
killed, the loop ends by itself and the run ends then. A tshark started after
the signal (by a thread: ``verify -j``) is killed at once. (A SIGKILL cannot be caught:
tshark then stops at its next write to the closed pipe.)
"""

import asyncio
import contextlib
import functools
import importlib.util
import os
import re
import shutil
import signal
import tempfile
import threading

INSTALL_HINT = ("this needs tshark, Wireshark's command-line tool: install it "
                "(Debian/Ubuntu: apt-get install tshark) or put it on PATH")

# Every preference that matters is set, so neither defaults nor a profile do
# (the test suite's tshark reference, tests/tshark_ref.py, runs with these too).
PREFS = (
    # subdissectors may ask TCP to reassemble: records spanning segments
    "tcp.desegment_tcp_streams:TRUE",
    # sequence analysis: relative sequence numbers (relative seq 1 = our offset 0),
    # retransmission detection
    "tcp.analyze_sequence_numbers:TRUE",
    "tcp.relative_sequence_numbers:TRUE",
    # buffer out-of-order segments and hand them to TLS in sequence order
    # (default FALSE; without it records are lost where segments arrive out
    # of order: 8 corpus files lose 1 to 4 records)
    "tcp.reassemble_out_of_order:TRUE",
    # retransmitted bytes are not dissected again (no record reported twice)
    "tcp.no_subdissector_on_error:TRUE",
    # a bad checksum (offloading) must not stop reassembly
    "tcp.check_checksum:FALSE",
    "ip.check_checksum:FALSE",
    # port-registered dissectors first (TLS on 443 ...), heuristics after
    "tcp.try_heuristic_first:FALSE",
    "ip.defragment:TRUE",
    "ipv6.defragment:TRUE",
    # TLS records spanning TCP segments are reassembled
    "tls.desegment_ssl_records:TRUE",
    "tls.desegment_ssl_application_data:TRUE",
)
# For decryption: one record's plaintext at a time, handed to "data", not to HTTP.
DECRYPT_PREFS = ("tls.desegment_ssl_application_data:FALSE",)
TLS_HEURISTICS = ("http_tls", "http2_tls")
# The PDML subtrees verify reads (-j): leaves of these, nothing of the others.
VERIFY_SUBTREES = "ip ipv6 tcp tls tls.record fake-field-wrapper tcp.segments"

# Seconds tshark may take on a file: a floor plus a generous rate.
TIMEOUT_FLOOR = 120.0
TIMEOUT_PER_MB = 5.0



class TsharkMissing(RuntimeError):
    """tshark (or pyshark) is not installed: the message says what to install."""


class TsharkFailed(RuntimeError):
    """tshark could not read a capture, failed, or ran past its timeout."""


def find_tshark(tshark=None):
    """The path of the tshark to run; ``TsharkMissing`` when there is none (or no pyshark)."""
    if importlib.util.find_spec("pyshark") is None:
        raise TsharkMissing("this needs the Python package pyshark, which pcap-tls-split "
                            "depends on: reinstall it (pip install pcap-tls-split)")
    path = shutil.which(tshark or "tshark")
    if path is None:
        raise TsharkMissing(INSTALL_HINT)
    return path


# -- running tshark through pyshark ------------------------------------------------

class _Loop(asyncio.SelectorEventLoop):
    """pyshark starts tshark through its event loop: this one gives tshark a fixed environment."""

    def __init__(self, env):
        super().__init__()
        self._env = env
        self.slow_callback_duration = 3600.0  # parsing a packet is slow by asyncio's debug standard

    async def subprocess_exec(self, protocol_factory, *args, **kwargs):
        kwargs.setdefault("env", self._env)
        if hasattr(os, "killpg"):
            kwargs.setdefault("process_group", 0)    # a group of its own: killed whole
        # a signal while the child is started cannot kill it yet (its pid is not
        # known), nor one before it, the run ending (in another thread): it is
        # killed once noted, and the run ends when tshark_packets has cleaned up
        transport, protocol = await super().subprocess_exec(protocol_factory, *args, **kwargs)
        RUNNING.add(transport.get_pid())
        if NOTED:
            kill_children()
        return transport, protocol


# -- tshark children, ended on every exit path ------------------------------------------

RUNNING = set()   # process group ids (= pids) of the tshark children running now
DEFERRING = []    # not empty while pyshark's loop runs in the main thread: a signal is noted, not acted on
NOTED = []        # the signals that came inside the outermost ended_on_signals (a tshark
                  # started after one is killed at once, in any thread)
_DEPTH = []       # ended_on_signals of the main thread, nested
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


def kill_children():
    """Kill every tshark child still running, with its process group."""
    for pid in list(RUNNING):
        try:
            os.killpg(pid, signal.SIGKILL) if hasattr(os, "killpg") else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            RUNNING.discard(pid)
        except PermissionError:
            pass


def _on_signal(signum, frame):
    NOTED.append(signum)
    kill_children()
    if DEFERRING:
        return
    _end_for(signum)


def _end_for(signum):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _deferred_signal():
    """A signal that came while pyshark's loop ran in the main thread: end the run now."""
    if NOTED and not DEFERRING and threading.current_thread() is threading.main_thread():
        _end_for(NOTED[-1])


@contextlib.contextmanager
def ended_on_signals():
    """Inside: SIGTERM, SIGHUP and SIGINT kill the tshark children first (see the
    module docstring). A signal that is ignored stays ignored; outside the main
    thread (where handlers cannot be set) nothing changes."""
    previous = {}
    main = threading.current_thread() is threading.main_thread()
    if main:
        if not _DEPTH:
            NOTED.clear()           # (what an earlier run noted is not this one's)
        _DEPTH.append(True)
        for sig in SIGNALS:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            try:
                previous[sig] = signal.signal(sig, _on_signal)
            except (ValueError, OSError):
                pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if main:
            _DEPTH.pop()
            if not _DEPTH:
                NOTED.clear()


def _env(confdir):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LC_") or k in ("LANG", "LANGUAGE"))}
    env.update(LC_ALL="C", LANG="C", TZ="UTC",
               # an empty personal configuration: nobody's preferences, decode-as
               # entries, key log files or disabled protocols
               WIRESHARK_CONFIG_DIR=confdir)
    return env


@functools.lru_cache(maxsize=None)
def _tshark_version(tshark):
    from pyshark.tshark.tshark import get_tshark_version
    return get_tshark_version(tshark)


# What pyshark strips from each packet's XML before parsing it (tshark_xml.DEL_BAD_XML_CHARS)
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@functools.lru_cache(maxsize=None)
def _capture_class():
    import lxml.objectify
    import pyshark
    from pyshark.tshark.output_parser.tshark_xml import TsharkXmlParser, packet_from_xml_packet

    class _Parser(TsharkXmlParser):
        # pyshark cleans every packet's XML with str.translate over a dict, a third
        # of the whole run on payload-heavy packets: the same cleaning by regex
        def _parse_single_packet(self, packet):
            text = packet.decode(errors="ignore")
            if _BAD_XML.search(text):
                text = _BAD_XML.sub("", text)
            parser = lxml.objectify.makeparser(huge_tree=True, recover=True, encoding="utf-8")
            return packet_from_xml_packet(lxml.objectify.fromstring(text.encode("utf-8"), parser))

    class _Capture(pyshark.FileCapture):
        # pyshark runs `tshark -v` for every capture (0.2 s): once per process is enough
        def _get_tshark_version(self):
            return _tshark_version(self.tshark_path)

        def _setup_tshark_output_parser(self):
            return _Parser()

    return _Capture


def set_filter(tshark, values):
    """A display-filter set: commas from Wireshark 4.0 on, spaces before."""
    from packaging import version
    separator = ", " if _tshark_version(tshark) >= version.parse("4.0") else " "
    return "{" + separator.join(str(v) for v in sorted(values)) + "}"


def timeout_for(path, timeout):
    if timeout is not None:
        return timeout
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return TIMEOUT_FLOOR + TIMEOUT_PER_MB * size / 1e6


def tshark_packets(path, tshark, parameters, display_filter, on_packet, timeout):
    """Run tshark on ``path`` through pyshark, calling ``on_packet`` with each
    pyshark packet. ``TsharkFailed`` when tshark fails or runs past ``timeout``;
    tshark is always gone (killed and reaped) on return."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _tshark_packets_here(path, tshark, parameters, display_filter, on_packet, timeout)
    # called from a running event loop (a notebook, async code): pyshark's loop
    # cannot run inside it, so it gets a thread of its own
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_tshark_packets_here, path, tshark, parameters, display_filter,
                           on_packet, timeout).result()


def _tshark_packets_here(path, tshark, parameters, display_filter, on_packet, timeout):
    from pyshark.capture.capture import TSharkCrashException
    capture_class = _capture_class()
    with ended_on_signals(), tempfile.TemporaryDirectory(prefix="pcap-tls-split-tshark-") as confdir:
        loop = _Loop(_env(confdir))
        capture = task = None
        main = threading.current_thread() is threading.main_thread()
        if main:
            DEFERRING.append(True)
        try:
            capture = capture_class(os.fspath(path), keep_packets=False, display_filter=display_filter,
                                    tshark_path=tshark, eventloop=loop, custom_parameters=parameters)
            task = loop.create_task(_drain(capture, on_packet, timeout))
            returncode = loop.run_until_complete(task)
            error = getattr(capture, "_last_error_line", None) or ""
        except asyncio.TimeoutError:
            raise TsharkFailed(f"tshark took longer than {timeout:g} s on {path}; stopped") from None
        except TSharkCrashException as exc:
            raise TsharkFailed(f"tshark failed on {path}: {exc}") from None
        finally:
            try:
                if capture is not None:
                    _kill(loop, capture, task)
                loop.close()
            finally:
                if main:
                    DEFERRING.pop()
            _deferred_signal()
    # tshark exits 2 on a capture cut short in the middle of a packet, after
    # printing all it could read: keep that, fail on anything else
    if returncode and "cut short" not in error:
        raise TsharkFailed(f"tshark could not read {path} (exit {returncode}): {error}")


async def _drain(capture, on_packet, timeout):
    from pyshark.capture.capture import TSharkCrashException
    await asyncio.wait_for(capture.packets_from_tshark(on_packet, close_tshark=False), timeout)
    processes = list(capture._running_processes)
    for process in processes:
        # reap it here: pyshark's cleanup would kill (and reap) it under the child watcher
        await asyncio.wait_for(process.wait(), timeout)
        RUNNING.discard(process.pid)
    try:
        await capture.close_async()
    except TSharkCrashException:
        pass  # its exit status is ours to judge
    return max((p.returncode or 0 for p in processes), default=0)


def _kill(loop, capture, task):
    """Whatever happened: no tshark left running, no task left pending or unretrieved."""
    processes = list(getattr(capture, "_running_processes", ()))
    for process in processes:
        if process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError):
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    tasks = set(asyncio.all_tasks(loop)) | set(getattr(capture, "_stderr_handling_tasks", ()))
    if task is not None:
        tasks.add(task)
    for pending in tasks:
        pending.cancel()

    async def settle():
        for process in processes:
            await process.wait()
            RUNNING.discard(process.pid)
        await asyncio.gather(*tasks, return_exceptions=True)

    interrupted = None
    for _ in range(3):
        try:
            loop.run_until_complete(asyncio.wait_for(settle(), 10))
            break
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted = exc   # a task interrupted earlier re-raises it here: settle again
        except Exception:
            break
    for done in tasks:
        if done.done() and not done.cancelled():
            done.exception()    # retrieved: nothing logged when the loop goes
    for process in processes:
        if process.returncode is not None:
            RUNNING.discard(process.pid)
    capture._running_processes.clear()
    capture._stderr_handling_tasks = []
    loop.run_until_complete(loop.shutdown_asyncgens())
    if interrupted is not None:
        raise interrupted


def tshark_parameters(force, prefs=(), extra=()):
    parameters = ["-2"]
    for pref in PREFS + tuple(prefs):
        parameters += ["-o", pref]
    for port in sorted(force):
        parameters += ["-d", f"tcp.port=={port},tls"]
    return parameters + list(extra)
