"""The library API: capture files in, a report out.

``analysis.analyze(paths)`` runs the whole path over each input (``run.FileRun``)
and returns a ``report.Report``; ``analysis.records(paths)`` gives every TLS
record found. Inputs are files, directories (walked by ``inputs.expand_inputs``)
or ``-`` for standard input; ``parallel.py`` spreads several of them over
processes or a Dask cluster. Nothing here prints.
"""

from .analysis import analyze, records
from .inputs import expand_inputs
from .parallel import ClusterUnavailable, map_files
from .run import FileRun, analyze_file

__all__ = ["ClusterUnavailable", "FileRun", "analyze", "analyze_file", "expand_inputs", "map_files",
           "records"]
