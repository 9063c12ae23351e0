"""Imports the built-in systems so that they register themselves (see base.register_system)."""
import importlib

BUILTIN = ("deepjscc", "jpeg2000_ldpc", "prompt_only", "tisc")  # module names

for _name in BUILTIN:
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as e:  # a system not written yet, or an optional dependency missing
        if e.name != f"{__package__}.{_name}":
            raise
