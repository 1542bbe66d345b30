# Types for compiling pcap.py with Cython (setup.py): declarations only, the
# logic is all in pcap.py. The record walk's offsets and lengths are C integers.
cimport cython


cdef bint COMPILED

@cython.locals(value=cython.longlong)
cpdef long long u32(bytes buf, Py_ssize_t at, bint little) except -1

@cython.locals(end=Py_ssize_t, header=Py_ssize_t, nxt=Py_ssize_t, incl=Py_ssize_t, sec=Py_ssize_t,
               frac=Py_ssize_t, orig=Py_ssize_t, compiled=bint)
cpdef tuple records(object buf, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t limit, double div, object lt,
                    object unpack, bint little, list packets)
