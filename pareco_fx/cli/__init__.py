"""The ``pareco-fx`` command line: one module per subcommand (inspect, slim, front, export).

The click group lives in :mod:`pareco_fx.cli.main` (entry point ``pareco_fx.cli.main:cli``).
"""
