# Types for compiling rules.py with Cython (setup.py): declarations only, the
# logic is all in rules.py. The rules without a closure (a generator or lambda:
# Cython's cpdef functions take none) read their facts and sides as the typed
# objects they are (facts.pxd, connection.pxd); the others stay Python functions.
cimport cython

from pcap_tls_split.findings.facts cimport Facts
from pcap_tls_split.tcp.connection cimport Close, Side

@cython.locals(closer=Side, peer=Side, close=Close)
cpdef close_inside_record(Facts f)
cpdef list _pending_data(Facts f)
@cython.locals(closer=Side, peer=Side, close=Close)
cpdef close_before_peer_finished(Facts f)
cpdef _stopped_mid_record(Side side)
@cython.locals(close=Close)
cpdef truncated_record(Facts f, Side side)
cpdef capture_ended_inside_record(Facts f, Side side)
@cython.locals(close=Close)
cpdef no_close_notify(Facts f, Side side)
cpdef str _unseen_reason(Facts f, Side side, object unseen)
@cython.locals(close=Close, peer=Side)
cpdef abortive_close(Facts f, Side side)
cpdef _finding(Facts f, object code, object side, object time, object frame, object message,
               object evidence, object severity=*, object confidence=*, object why=*)
cpdef list evidence_frames(object evidence, object into=*)
cpdef str display_filter(object stream, object frame, object evidence)
