"""Command line: click wiring over the library API (``pcap_tls_split.analyze``)."""

import enum
import functools
import importlib
import os
import sys
import time
import traceback

import click

from ._version import __version__
from .api import ClusterUnavailable, analyze as run_analysis, expand_inputs
from .findings import SEVERITIES, Severity
from .report import render


class Exit(enum.IntEnum):
    """Exit status (SIGNATURES.md)."""

    OK = 0          # nothing at or above --fail-on
    FINDINGS = 1    # a finding at or above --fail-on
    ERROR = 2       # a usage error, or an input that could not be read at all


FORMATS = ("table", "json", "jsonl", "csv")


class Failure(click.ClickException):
    """The run could not be done (exit status 2, not 1: 1 means findings)."""

    exit_code = 2


def common_options(func):
    """Options shared by the commands that read captures."""
    @click.argument("inputs", nargs=-1, required=True, metavar="CAPTURE...")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                  help="Output format.")
    @click.option("--stream", type=int, default=None, metavar="N",
                  help="Only Wireshark's tcp.stream N.")
    @click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                  metavar="SECONDS",
                  help="Finish connections idle this long (capture time; default 600).")
    @click.option("-j", "--jobs", type=click.IntRange(1), default=None, metavar="N",
                  help="Analyse N files at once in worker processes (default: the number of CPUs).")
    @click.option("--dask", metavar="ADDRESS", default=None,
                  help="Send the files to this Dask scheduler (e.g. tcp://10.0.0.5:8786); "
                       "its workers must see the same paths.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress bar on a terminal.")
    @click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug")
        quiet = kwargs.pop("quiet")
        inputs = kwargs["inputs"]
        kwargs["scale"] = dict(jobs=kwargs.pop("jobs") or os.cpu_count() or 1, dask=kwargs.pop("dask"),
                               progress=None if quiet else Progress.for_terminal(inputs))
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (| head): not an error
            sys.exit(Exit.OK)
        except KeyboardInterrupt:
            sys.exit(130)
        except ClusterUnavailable as exc:
            raise Failure(str(exc))
        except Exception as exc:
            if debug:
                traceback.print_exc()
            raise Failure(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
        finally:
            if kwargs["scale"]["progress"] is not None:
                kwargs["scale"]["progress"].close()
    return wrapper


class Progress:
    """A one-line progress bar on stderr: bytes read of the total, files done."""

    def __init__(self, paths):
        self.files = len(paths)
        self.sizes = {p: os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p)}
        self.total = sum(self.sizes.values())
        self.done_files = 0
        self.done_bytes = 0
        self.shown = 0.0

    @classmethod
    def for_terminal(cls, inputs):
        """A bar when stderr is a terminal, else None (never in pipes or logs)."""
        if not sys.stderr.isatty():
            return None
        return cls(list(expand_inputs(inputs)))

    def reading(self, path, done, total):
        self._show(self.done_bytes + min(done, self.sizes.get(path, done)))

    def file_done(self, path):
        self.done_files += 1
        self.done_bytes += self.sizes.get(path, 0)
        self._show(self.done_bytes, force=True)

    def _show(self, read, force=False):
        now = time.monotonic()
        if not force and now - self.shown < 0.2:
            return
        self.shown = now
        share = read / self.total if self.total else 0.0
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r[{bar:<30}] {read / 1e6:,.0f}/{self.total / 1e6:,.0f} MB, "
                         f"{self.done_files}/{self.files} files")
        sys.stderr.flush()

    def close(self):
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def keylog_option(func):
    """--keylog: decrypt through tshark with an SSLKEYLOGFILE key log."""
    return click.option("--keylog", type=click.Path(exists=True, dir_okay=False), default=None,
                        metavar="FILE",
                        help="TLS key log (SSLKEYLOGFILE format): tshark decrypts the records "
                             "and the output says what they held.")(func)


class Commands(click.Group):
    """The command group; the commands in LAZY are imported when used (start-up time)."""

    LAZY = {"lab": ("pcap_tls_split.lab.cli", "lab")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, name):
        if name in self.LAZY:
            module, attr = self.LAZY[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def _wireshark():
    """The tshark/pyshark module, imported when a command needs it."""
    from . import wireshark
    return wireshark


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcap-tls-split")
def main():
    """Locate TLS records against TCP segments and flag premature closes.

    CAPTURE is a pcap or pcapng file (gzip-compressed or not), a directory
    (searched recursively) or - for standard input.
    """



@main.command()
@common_options
@click.option("--all", "all_connections", is_flag=True,
              help="List every TLS connection, not only those with findings.")
@click.option("--fail-on", type=click.Choice(list(reversed(SEVERITIES)) + ["never"]), default="high",
              show_default=True, help="Exit 1 when a finding is at or above this severity.")
@keylog_option
def analyze(inputs, fmt, stream, idle_timeout, scale, all_connections, fail_on, keylog):
    """Flag premature-close signatures, one row per finding, then a summary.

    With --keylog, tshark decrypts the records around each finding and the
    finding says what they held (evidence app_data).

    Exit status: 0 nothing at or above --fail-on, 1 a finding at or above it,
    2 a usage error or an input that could not be read at all.
    """
    out = sys.stdout
    on_connection = None
    if fmt == "jsonl":
        def on_connection(conn):
            render.render_jsonl_connection(conn, out)
            out.flush()
    options = dict(all_connections=all_connections, stream=stream, idle_timeout=idle_timeout,
                   on_connection=on_connection, **scale)
    result = None
    if keylog:
        try:
            result = _wireshark().analyze(list(inputs), keylog=keylog, **options)
        except _wireshark().TsharkMissing as exc:
            _plaintext_not_added(exc)
    if result is None:
        result = run_analysis(list(inputs), **options)
    render.RENDERERS[fmt](result, out)
    _errors_to_stderr(result, fmt)
    if result.unreadable:
        sys.exit(Exit.ERROR)
    worst = result.worst()
    if fail_on != "never" and worst is not None and worst >= Severity(fail_on):
        sys.exit(Exit.FINDINGS)
    sys.exit(Exit.OK)


@main.command()
@common_options
@keylog_option
def records(inputs, fmt, stream, idle_timeout, scale, keylog):
    """Every TLS record against the segments (frames) that carried it.

    With --keylog, tshark decrypts them and a plaintext column shows the first
    line of each (or Wireshark's description of a record that is not
    application data; ? when it could not be decrypted).
    """
    out = sys.stdout
    if keylog:
        try:
            texts, inputs_read = _wireshark().records(list(inputs), keylog=keylog, stream=stream,
                                                   idle_timeout=idle_timeout)
        except _wireshark().TsharkMissing as exc:
            _plaintext_not_added(exc)
        else:
            texts.sort(key=lambda t: (t.row.file, t.row.stream, t.row.side != "client", t.row.index))
            _wireshark().render_records(texts, fmt, out)
            for inp in inputs_read:
                for error in inp.errors:
                    click.echo(f"pcap-tls-split: {error}", err=True)
            sys.exit(Exit.ERROR if any(i.format is None for i in inputs_read) else Exit.OK)
    rows = []
    streaming = fmt in ("jsonl",)
    on_record = (lambda row: render.write_jsonl((render.record_dict(row),), out)) \
        if streaming else rows.append
    result = run_analysis(list(inputs), stream=stream, idle_timeout=idle_timeout, on_record=on_record,
                          **scale)
    if not streaming:
        rows.sort(key=lambda r: (r.file, r.stream, r.side != "client", r.index))
        render.render_records(rows, fmt, out)
    _errors_to_stderr(result, None)
    sys.exit(Exit.ERROR if result.unreadable else Exit.OK)


@main.command()
@common_options
def verify(inputs, fmt, stream, idle_timeout, scale):
    """Our TLS records and closes against Wireshark's (tshark), per connection.

    tshark reads each capture again, decoding as TLS the ports where we found
    TLS from the first byte, and the two views are compared per connection and
    side: every record (offset, content type, length), the first FIN and the
    first RST. A table per connection says where they first differ.

    Exit status: 0 all agree, 1 a connection differs, 2 tshark missing, a usage
    error, or an input that could not be read (by us or by tshark).
    """
    out = sys.stdout
    try:
        result = _wireshark().verify(list(inputs), stream=stream, idle_timeout=idle_timeout,
                                  jobs=scale["jobs"])
    except _wireshark().TsharkMissing as exc:
        click.echo(f"pcap-tls-split: verify: {exc}", err=True)
        sys.exit(Exit.ERROR)
    _wireshark().render_verify(result, fmt, out)
    if fmt != "table":
        for inp in result.inputs:
            for error in inp.errors:
                click.echo(f"pcap-tls-split: {error}", err=True)
    if result.unreadable:
        sys.exit(Exit.ERROR)
    sys.exit(Exit.OK if result.agree else Exit.FINDINGS)


def _plaintext_not_added(exc):
    click.echo(f"pcap-tls-split: --keylog: {exc}; the plaintext could not be added", err=True)


def _errors_to_stderr(result, fmt):
    if fmt == "table":
        return  # the summary already lists them
    for inp in result.inputs:
        for error in inp.errors:
            click.echo(f"pcap-tls-split: {error}", err=True)


if __name__ == "__main__":
    main()
