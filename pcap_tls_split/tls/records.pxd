# Types for compiling records.py with Cython (setup.py): declarations only, the
# logic is all in records.py. Every attribute its classes set is declared here;
# one that can hold None or a big number stays an object.
cimport cython

# Constants imported from other modules, as C integers here (arithmetic and
# comparisons with them are C ones; they are then no attributes of this module).
cdef int ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, CLIENT_HELLO, CLIENT_HELLO_BODY, HANDSHAKE
cdef int HEADER_LENGTH, HEARTBEAT, MAX_RECORD_LENGTH, SERVER_HELLO

from pcap_tls_split.tls.wire cimport HandshakeReader, tls_start

cdef class RecordTracker:
    cdef public object alpn, alpn_offered, cipher, client_random, sni, server_version
    cdef public object sslv2_hello, tls_start, partial
    cdef public bint ccs_seen, client_hello, hello_retry
    cdef public Py_ssize_t broken, count, desyncs, pos
    cdef public object mode
    cdef public object _alert_bytes, _candidates, _cur_ends, _cur_frames, _first_time
    cdef public object _handshake, _hdr, _held, _hs_probe, _last_time, _log, _messages
    cdef public object _type, _version, _length
    cdef public Py_ssize_t _body_left, _hdr_frames, _hlen, _log_done, _missing, _sslv2, _start
    cdef public bint _coalesced_prev, _parse_handshake, _reading

    cpdef Py_ssize_t in_body(self, Py_ssize_t offset)
    cpdef skip_body(self, Py_ssize_t offset, Py_ssize_t size, object frame, object time)
    cpdef data(self, Py_ssize_t offset, object payload, object frame, object time)
    cdef _feed(self, Py_ssize_t offset, object payload, object frame, object time, list out)
    @cython.locals(log=list, size=Py_ssize_t, start=Py_ssize_t)
    cdef _seek(self, Py_ssize_t offset, object payload, object frame, object time, list out)
    cdef _touch(self, object frame, object time, Py_ssize_t end, list out)
    cdef _begin_body(self)
    cdef _read_body(self, object chunk)
    @cython.locals(reader=HandshakeReader, messages=list)
    cdef _read_handshake(self, object chunk)
    cdef _complete(self)
    cdef bint _release(self, object next_first_frame, list out)
    cpdef _flush(self, list out)
    cdef _reset_record(self)

    @cython.locals(pos=Py_ssize_t, n=Py_ssize_t, base=Py_ssize_t, content_type=int, length=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, take=Py_ssize_t)
    cdef _feed_sync(self, object payload, object frame, object time, list out)
