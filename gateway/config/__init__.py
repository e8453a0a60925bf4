"""The configuration: its msgspec schema (schema/, one module per section), reading and checking a
file (load.py), the embedded default, and the state directory. It imports no feature: features
import their settings from here."""
