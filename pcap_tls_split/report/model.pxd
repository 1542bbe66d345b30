# Types for compiling model.py with Cython (setup.py): declarations only. Its
# classes stay Python classes; the JSON writer's field loop runs on C integers.
cimport cython

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, parts=list)
cpdef str _object_text(object value, tuple names, tuple keys)
