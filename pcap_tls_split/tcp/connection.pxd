# Types for compiling connection.py with Cython (setup.py): declarations only, the
# logic is all in connection.py. Every attribute its classes set is declared here;
# one that can hold None or a big number stays an object. Sequence and acknowledgment
# numbers (32 bits, unsigned) are long long on every platform: -1 until one is known.
cimport cython

# Constants imported from other modules, as C integers here (arithmetic and
# comparisons with them are C ones; they are then no attributes of this module).
cdef int ACK, FIN, RST, SYN, APPLICATION_DATA, HANDSHAKE

from pcap_tls_split.tcp.reassembly cimport SideStream
from pcap_tls_split.tls.records cimport RecordTracker

cdef class Close:
    cdef public object kind, offset
    cdef public Py_ssize_t frame, reach, peer_gaps, peer_captured, captured
    cdef public double time
    cdef public bint reach_estimated

cdef class Side:
    cdef public object addr, records, type23_head, type23_tail, finished, alerts
    cdef public object close, fin, rst, segments, close_peer_segment
    cdef public SideStream stream
    cdef public RecordTracker tracker
    cdef public Py_ssize_t port, total, straddling, header_split, coalesced
    cdef public long long last_ack, first_seq
    cdef public bint syn, synack
    cpdef note_segment(self, object frame, object time, object end)
    @cython.locals(i=Py_ssize_t)
    cpdef note_segments(self, list frames, list times, list ends)

cdef class Connection:
    cdef public object ended_at, end_reason, _client, on_record
    cdef public object syn_time, rtt, synack_time, socks
    cdef public Py_ssize_t stream
    cdef public double start, last
    cdef public Side a, b
    cdef public bint closing, midstream, continued, quoted
    cpdef packet(self, Side side, Side peer, object frame, object time, object seq, long long ack, int flags, object payload, object missing)
    @cython.locals(stream=SideStream, tracker=RecordTracker, offset=object)
    cpdef segment_in_order(self, Side side, Side peer, object buf, Py_ssize_t start, Py_ssize_t size, object seq, long long ack, int flags, object frame, object time)
    cpdef end_run(self, Side side, list frames, list ends, list times, Py_ssize_t left)
    cdef _acked(self, Side side, Side peer, long long ack)
    cdef _closed(self, Side side, Side peer, object frame, object time, int flags, long long ack)
    cdef _marked(self, Side side, Side peer, object frame, object time, int flags)
    @cython.locals(tracker=RecordTracker)
    cdef _data(self, Side side, Py_ssize_t offset, object payload, object frame, object time)
    @cython.locals(tracker=RecordTracker)
    cpdef consume(self, Side side, object events)
    cdef _record(self, Side side, object record)
    cpdef str role(self, Side side)
    cpdef Side peer(self, Side side)
    cpdef finish(self)

cdef class Numbered(Connection):
    cdef public bint payload_seen
