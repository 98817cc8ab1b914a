"""Prefect flows, one stage per module: ``ingest``, ``extract``, ``graph``, ``train``, ``compare``, ``analyze``.

Flows wire tasks and talk to the store; the computation lives in :mod:`features` and :mod:`models`.
"""
