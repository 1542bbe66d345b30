"""Frozen dataclasses that pickle fast: what findings and reports are made of.

``dataclass(frozen=True, slots=True)`` pickles each object through
``dataclasses.fields``, both ways (a few microseconds an object, and a
connection's report is a dozen of them: the bulk of what a worker's results
cost its parent). ``frozen`` makes the same class, and has it pickle as a call
of the class with its field values in order.
"""

from dataclasses import dataclass, fields
from operator import attrgetter


def frozen(cls):
    """``dataclass(frozen=True, slots=True)``, pickled (and copied) by its fields' values."""
    cls = dataclass(frozen=True, slots=True)(cls)
    made = fields(cls)
    if not all(f.init for f in made):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument")
    values = attrgetter(*(f.name for f in made))
    if len(made) == 1:
        def __reduce__(self):
            return cls, (values(self),)
    else:
        def __reduce__(self):
            return cls, values(self)
    cls.__reduce__ = __reduce__
    return cls
