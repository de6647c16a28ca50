"""`MechHybridError` without importing the `mechhybrid` package (whose __init__ imports torch and nnsight).

`analyses.schema` must load where torch is absent or blocked (reports import it, issue 7), yet raise the library's own error class so
that the CLI's one `except MechHybridError` catches them. `mechhybrid/errors.py` itself is torch-free, so it is
loaded from its file and registered as `mechhybrid.errors`; a later `import mechhybrid` then finds it in
sys.modules and uses this same module, so the class is the same object either way. Once the package's
__init__ imports lazily this reduces to `from mechhybrid.errors import MechHybridError`.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["MechHybridError"]


def _load():
    name = "mechhybrid.errors"
    if name not in sys.modules:
        package = importlib.util.find_spec("mechhybrid")  # a top-level find_spec does not run __init__
        if package is None or not package.submodule_search_locations:
            raise ImportError("the mechhybrid package is not importable")
        path = list(package.submodule_search_locations)[0] + "/errors.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].MechHybridError


MechHybridError = _load()
