"""The multiscale command line (installed as ``multiscale_cli``).

A thin layer: parse options, build a config, call the library, save. No
TensorFlow import happens before a command actually runs.
"""
