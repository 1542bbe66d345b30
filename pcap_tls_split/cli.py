"""Command line: click wiring over the library API (``pcap_tls_split.analyze``)."""

import enum
import functools
import sys
import traceback

import click

from . import __version__
from .analyze import analyze as run_analysis
from .findings import SEVERITIES
from . import report as render


class Exit(enum.IntEnum):
    """Exit status (SIGNATURES.md)."""

    OK = 0          # nothing at or above --fail-on
    FINDINGS = 1    # a finding at or above --fail-on
    ERROR = 2       # a usage error, or an input that could not be read at all


FORMATS = ("table", "json", "jsonl", "csv")


def common_options(func):
    """Options shared by the commands that read captures."""
    @click.argument("inputs", nargs=-1, required=True, metavar="CAPTURE...")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                  help="Output format.")
    @click.option("--stream", type=int, default=None, metavar="N",
                  help="Only Wireshark's tcp.stream N.")
    @click.option("--idle-timeout", type=float, default=None, metavar="SECONDS",
                  help="Finish connections idle this long (capture time; default 600).")
    @click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug")
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (| head): not an error
            sys.exit(Exit.OK)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            raise click.ClickException(f"internal error: {type(exc).__name__}: {exc} "
                                       "(run with --debug for the traceback)")
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
def analyze(inputs, fmt, stream, idle_timeout, debug, all_connections, fail_on):
    """Flag premature-close signatures, one row per finding, then a summary.

    Exit status: 0 nothing at or above --fail-on, 1 a finding at or above it,
    2 a usage error or an input that could not be read at all.
    """
    out = click.get_text_stream("stdout")
    on_connection = None
    if fmt == "jsonl":
        def on_connection(conn):
            render.render_jsonl_connection(conn, out)
            out.flush()
    result = run_analysis(list(inputs), all_connections=all_connections, stream=stream,
                          idle_timeout=idle_timeout, on_connection=on_connection)
    if fmt == "table":
        render.render_table(result, out)
    elif fmt == "json":
        render.render_json(result, out)
    elif fmt == "jsonl":
        render.render_jsonl_summary(result, out)
    else:
        render.render_csv(result, out)
    _errors_to_stderr(result, fmt)
    if result.unreadable:
        sys.exit(Exit.ERROR)
    if fail_on != "never" and result.worst() >= SEVERITIES.index(fail_on):
        sys.exit(Exit.FINDINGS)
    sys.exit(Exit.OK)


@main.command()
@common_options
def records(inputs, fmt, stream, idle_timeout, debug):
    """Every TLS record against the segments (frames) that carried it."""
    out = click.get_text_stream("stdout")
    rows = []
    streaming = fmt in ("jsonl",)
    on_record = (lambda row: out.write(render.json.dumps(render.record_dict(row)) + "\n")) \
        if streaming else rows.append
    result = run_analysis(list(inputs), stream=stream, idle_timeout=idle_timeout, on_record=on_record)
    if not streaming:
        rows.sort(key=lambda r: (r.file, r.stream, r.side != "client", r.index))
        render.render_records(rows, fmt, out)
    _errors_to_stderr(result, None)
    sys.exit(Exit.ERROR if result.unreadable else Exit.OK)


def _errors_to_stderr(result, fmt):
    if fmt == "table":
        return  # the summary already lists them
    for inp in result.inputs:
        for error in inp.errors:
            click.echo(f"pcap-tls-split: {error}", err=True)


if __name__ == "__main__":
    main()
