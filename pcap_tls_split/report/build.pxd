# Types for compiling build.py with Cython (setup.py): declarations only, the
# logic is all in build.py. A connection's parts are read as the typed objects
# they are (connection.pxd, reassembly.pxd, records.pxd).
cimport cython

from pcap_tls_split.tcp.connection cimport Connection, Side
from pcap_tls_split.tcp.reassembly cimport SideStream
from pcap_tls_split.tls.records cimport RecordTracker

@cython.locals(client=Side, server=Side, closer=Side, mine=SideStream, theirs=SideStream,
               hello=RecordTracker, answer=RecordTracker)
cpdef connection_report(object path, Connection conn, object facts, object found)
