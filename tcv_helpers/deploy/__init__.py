"""Deployment (notebooks 07-08): optimization and export, torch-free inference, the service, its server and load-test client.

Importing this package imports none of its modules: import the one you need.
"""
