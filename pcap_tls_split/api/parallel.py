"""Several inputs at once: here, in a process pool, or on a Dask cluster."""

import os

from .inputs import expand_inputs
from .run import analyze_file, sendable

# -j on one capture at least this big splits its connections across the workers
# (each reads the whole file and analyses its share); below it, starting the
# workers costs more than they save
SPLIT_LEAST = 32 << 20


class ClusterUnavailable(Exception):
    """The Dask scheduler given cannot be used (one line saying why)."""


def dask_client(address):
    """A client of the Dask scheduler at ``address`` (``ClusterUnavailable`` when there is none)."""
    try:
        from distributed import Client
        return Client(address, timeout="15s")
    except ImportError:
        raise ClusterUnavailable("--dask needs dask distributed: pip install 'pcap-tls-split[dask]'") \
            from None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def map_files(work, paths, jobs=1, dask=None, progress=None):
    """``work(path, reading)`` of each input, in input order: here (``reading`` is the
    progress callback, or None), in a pool of ``jobs`` processes or on a Dask cluster
    (``reading`` None there). ``work`` must be a module-level function when run
    elsewhere; what it returns must pickle."""
    paths = list(expand_inputs(paths))
    if dask:
        with dask_client(dask) as client:
            futures = client.map(work, paths, reading=None, pure=False)
            for path, future in zip(paths, futures):
                yield future.result()
                if progress:
                    progress.file_done(path)
        return
    if (jobs or 1) <= 1 or len(paths) <= 1 or "-" in paths:
        for path in paths:
            yield work(path, progress.reading if progress else None)
            if progress:
                progress.file_done(path)
        return
    yield from _in_pool(work, paths, jobs, progress, None)


def _analyze_in_worker(path, options, keep_records):
    try:
        return _analyze_here(path, options, keep_records)
    except Exception as exc:    # a callback's (prepare's): the parent raises it
        sent = sendable(exc)
        if sent is exc:
            raise
    raise sent


def _analyze_here(path, options, keep_records):
    # the parent replays what a worker listed: it sends them all (or, with prepare,
    # what it made of them, and the reports only when they are kept)
    if options.get("prepare") is None:
        result = analyze_file(path, dict(options, keep=True), keep_records=keep_records)
        result.replay = result.listed
    else:
        prepared = []
        result = analyze_file(path, options, prepared.append, keep_records=keep_records)
        result.replay = prepared
    result.remote = True
    return result


def splits(paths, jobs, on_record):
    """Whether ``-j jobs`` splits the connections of the one capture given."""
    return (jobs or 1) > 1 and len(paths) == 1 and paths[0] != "-" and on_record is None \
        and os.path.isfile(paths[0]) and os.path.getsize(paths[0]) >= SPLIT_LEAST


def results(paths, options, jobs, dask, on_connection, on_record, progress):
    """FileResults in input order: here, in a process pool, or on a Dask cluster."""
    paths = list(expand_inputs(paths))
    keep = on_record is not None
    parallel = (jobs or 1) > 1 and len(paths) > 1 and "-" not in paths
    if not dask and splits(paths, jobs, on_record):
        from .split import analyze_split
        result = analyze_split(paths[0], options, jobs, on_connection,
                               progress.reading if progress else None)
        if progress:
            progress.file_done(paths[0])
        yield result
        return
    if dask:
        with dask_client(dask) as client:
            futures = client.map(_analyze_in_worker, paths, options=options, keep_records=keep, pure=False)
            for path, future in zip(paths, futures):
                yield future.result()
                if progress:
                    progress.file_done(path)
        return
    if not parallel:
        for path in paths:
            result = analyze_file(path, options, on_connection, on_record,
                                  progress=progress.reading if progress else None)
            if progress:
                progress.file_done(path)
            yield result
        return
    yield from _in_pool(_analyze_in_worker, paths, jobs, progress, options, keep)


def _in_pool(work, paths, jobs, progress, *args):
    """``work(path, *args)`` of each path in a pool of ``jobs`` processes, in input
    order. When the caller stops (an exception, or it asks for no more), the files
    still waiting are not begun; those the workers have taken (up to one more each
    than they run: the pool's own queue) are finished first, then the pool ends."""
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        futures = [pool.submit(work, path, *args) for path in paths]
        try:
            for path, future in zip(paths, futures):
                yield future.result()
                if progress:
                    progress.file_done(path)
        finally:
            for future in futures:
                future.cancel()
