"""Package attributes imported on first use (PEP 562), for packages whose import must stay cheap.

`import datasets_ophvl` must work without `datasets`, `decord` or `av`, and `python -m evaluate_suite --help` must
not pay for importing torch and transformers (seconds, against a fraction of one). Both packages still offer their
main names at the top (`from datasets_ophvl import load_ophvl`), through this one mechanism.

It lives here because `datasets_ophvl` is the lowest package of ours that is cheap to import (`modeling_ophclip`
loads transformers), and the packages above may import it. It imports only the standard library.
"""

import importlib
import sys


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]):
    """`(__getattr__, __dir__, __all__)` for the `__init__` of `package`: each name listed under a submodule (relative,
    e.g. `".builder"`) is imported from it on first lookup, then kept in the package's namespace.

    ```python
    _LAZY = {".builder": ("OphVL", "OphVLConfig"), ".streaming": ("load_ophvl",)}
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
    ```
    """
    module = sys.modules[package]
    where = {name: submodule for submodule, names in modules.items() for name in names}
    if len(where) != sum(len(names) for names in modules.values()):
        raise ValueError(f"{package}: a name is listed under two submodules")

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
            setattr(module, name, value)  # later lookups find it without calling this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(where))

    return __getattr__, __dir__, sorted(where)


__all__ = ["lazy_exports"]
