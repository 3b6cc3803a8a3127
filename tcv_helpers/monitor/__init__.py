"""Monitoring (notebook 09): drift, Prometheus and the relabel loop.

Importing this package imports none of its modules: import the one you need.
"""
