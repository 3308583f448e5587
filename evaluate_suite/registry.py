"""The benchmark registry: the table of benchmark names to `BenchmarkSpec`s (see `spec.py` for what a benchmark is,
the split vocabulary and the prompt modes).

The built-in benchmarks are defined in `benchmarks.py` (`BUILTIN_BENCHMARKS`) and registered explicitly by
`load_builtin_benchmarks()`, which `get_benchmark` and `list_benchmarks` call on first use. The imports run one way:
registry -> benchmarks -> loaders -> spec (`benchmarks.py` never imports this module). Adding a benchmark is one
`register_benchmark(BenchmarkSpec(...))` call, plus a loader in `loaders.py` when its layout is new.
"""

from .spec import (  # noqa: F401  (re-exported: the registry is where users look for them)
    IGNORE_INDEX,
    PROMPT_MODES,
    PROMPTS_DIR,
    SPLITS,
    TASKS,
    BenchmarkSpec,
    LoadReport,
    VideoAnnotation,
    class_texts,
    load_prompts,
)


REGISTRY: dict[str, BenchmarkSpec] = {}
_BUILTINS_LOADED = False


def register_benchmark(spec: BenchmarkSpec, overwrite: bool = False) -> BenchmarkSpec:
    if not isinstance(spec, BenchmarkSpec):
        raise TypeError(f"register_benchmark needs a BenchmarkSpec, got {type(spec).__name__}")
    if spec.name in REGISTRY and not overwrite:
        raise ValueError(f"a benchmark named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def load_builtin_benchmarks() -> list[str]:
    """Register the built-in benchmarks of `benchmarks.py` (once; a name already registered by the user is kept) and
    return their names."""
    global _BUILTINS_LOADED
    from .benchmarks import BUILTIN_BENCHMARKS

    if not _BUILTINS_LOADED:
        for spec in BUILTIN_BENCHMARKS:
            REGISTRY.setdefault(spec.name, spec)
        _BUILTINS_LOADED = True
    return [spec.name for spec in BUILTIN_BENCHMARKS]


def get_benchmark(name: str) -> BenchmarkSpec:
    load_builtin_benchmarks()
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; registered: {sorted(REGISTRY)}") from None


def list_benchmarks(real: bool | None = None) -> list[str]:
    """Registered benchmark names, sorted; `real=True`: only published datasets, `False`: only synthetic ones."""
    load_builtin_benchmarks()
    return sorted(name for name, spec in REGISTRY.items() if real is None or spec.real == real)


__all__ = [
    "IGNORE_INDEX",
    "PROMPT_MODES",
    "REGISTRY",
    "SPLITS",
    "BenchmarkSpec",
    "LoadReport",
    "VideoAnnotation",
    "class_texts",
    "get_benchmark",
    "list_benchmarks",
    "load_builtin_benchmarks",
    "load_prompts",
    "register_benchmark",
]
