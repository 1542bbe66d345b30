# Compiled by setup.py as it is: no declarations (its classes stay Python classes;
# the per-call work of its functions is what compiling saves).
