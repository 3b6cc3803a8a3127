"""Models (notebooks 04-06): the catalogue, training, Detectron2, prediction and evaluation.

Importing this package imports none of its modules: import the one you need.
"""
