# Types for compiling model.py with Cython (setup.py): declarations only, the
# logic is all in model.py. Its classes stay Python classes (dataclasses); its
# JSON writer's functions call each other as C functions.
cimport cython

cpdef str float_text(object x)
cpdef str _value_text(object x)
cpdef to_json(object value)

@cython.locals(k=Py_ssize_t, parts=list)
cdef str _fields_text(object value, tuple names, tuple heads)
