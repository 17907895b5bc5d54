"""Converters of networks trained elsewhere, one module per architecture in spandrel's manner.

Each architecture module offers ``detect(state_dict)``, ``infer(state_dict, ...)`` (what the weights
tell) and the network class; ``command.py`` is `python -m exporter convert`, and ``reference_files.py``
reads that implementation's checkpoints (safely) and options files.
"""
