"""Several inputs at once: here, in a process pool, or on a Dask cluster."""

from .inputs import expand_inputs
from .run import analyze_file


class ClusterUnavailable(Exception):
    """The Dask scheduler given cannot be used (one line saying why)."""


def _analyze_in_worker(path, options, keep_records):
    result = analyze_file(path, options, keep_records=keep_records)
    result.remote = True
    return result


def results(paths, options, jobs, dask, on_connection, on_record, progress):
    """FileResults in input order: here, in a process pool, or on a Dask cluster."""
    paths = list(expand_inputs(paths))
    keep = on_record is not None
    parallel = (jobs or 1) > 1 and len(paths) > 1 and "-" not in paths
    if dask:
        try:
            from distributed import Client
            client = Client(dask, timeout="15s")
        except ImportError:
            raise ClusterUnavailable("--dask needs dask distributed: pip install 'pcap-tls-split[dask]'") \
                from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {dask}: {exc}") from None
        with client:
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
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        futures = [pool.submit(_analyze_in_worker, path, options, keep) for path in paths]
        for path, future in zip(paths, futures):
            yield future.result()
            if progress:
                progress.file_done(path)
