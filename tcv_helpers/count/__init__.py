"""Counting (notebook 10): tracking, line and zone counts per direction, privacy.

Importing this package imports none of its modules: import the one you need.
"""
