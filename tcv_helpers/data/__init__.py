"""Data (notebooks 02-03): the dataset type, the synthetic set, scraping, the registry, formats, QA, preparation and widgets.

Importing this package imports none of its modules: import the one you need.
"""
