"""The subcommands of ``retrain``, one module per group: each adds its parsers and holds their handlers.

:mod:`retrain.cli` builds the parser from them and runs the chosen handler.
"""
