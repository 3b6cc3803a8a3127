"""Batch runs (`tcv run`, `tcv slurm`): the papermill runner, the notebook rules, Slurm scripts and sweeps.

Importing this package imports none of its modules: import the one you need.
"""
