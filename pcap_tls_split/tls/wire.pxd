# Types for compiling wire.py with Cython (setup.py): declarations only, the
# logic is all in wire.py.
cimport cython


cdef class HandshakeReader:
    cdef public object _header, _kept, _kept_as
    cdef public Py_ssize_t _remaining

    @cython.locals(pos=Py_ssize_t, n=Py_ssize_t, take=Py_ssize_t, length=Py_ssize_t, msg_type=int,
                   started=list)
    cpdef list feed(self, object data)
    cpdef bint between_messages(self)


@cython.locals(at=Py_ssize_t, lead=int)
cpdef Py_ssize_t tls_start(object data)

@cython.locals(content_type=int, major=int, minor=int, length=Py_ssize_t)
cpdef parse_header(object header)

@cython.locals(pos=Py_ssize_t, at=Py_ssize_t, end=Py_ssize_t, kind=int, size=Py_ssize_t,
               ext_type=int, start=Py_ssize_t, stop=Py_ssize_t)
cpdef client_hello(object body)

@cython.locals(legacy_version=int, session_id_length=Py_ssize_t, cipher_at=Py_ssize_t, pos=Py_ssize_t,
               ext_type=int, start=Py_ssize_t, end=Py_ssize_t)
cpdef server_hello(object body)

@cython.locals(n=Py_ssize_t, end=Py_ssize_t, length=Py_ssize_t, spans=list)
cpdef list _extension_spans(bytes body, Py_ssize_t pos)

@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, size=Py_ssize_t)
cpdef tuple _alpn_names(object data)
