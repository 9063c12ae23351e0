"""Data for the LDPC codes used by :mod:`gensemcom.phy.ldpc`.

The tables live in Python modules (not loose data files) so that they are
installed with the package by any build backend.
"""
