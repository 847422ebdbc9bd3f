"""Verdicts: pure functions of the evidence.

Structural checks, the accuracy check and its bands, written answers, notes on the
code, lateness and the final score. Nothing here runs a notebook.
"""
