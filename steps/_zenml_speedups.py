"""One in-process speed-up for ZenML 0.98, applied when ``steps`` is imported (wherever a step runs).

Storing an artifact whose type comes from an installed package (every ``pandas.DataFrame``
output) resolves the type's source, and ZenML looks its package up with
``importlib.metadata.packages_distributions()``: a scan of every installed distribution, about
0.8 s on this project's environment, repeated for each artifact. The answer cannot change while
the process runs, so it is computed once per module. Remove this when ZenML caches the lookup.
"""

from __future__ import annotations

import functools


def cache_package_lookup() -> None:
    """Idempotent; does nothing where ZenML's private helper has moved, or on a release it was not written for."""
    import zenml
    from zenml.utils import source_utils

    if not zenml.__version__.startswith("0.98."):  # the release it was measured on (pyproject pins it)
        return

    lookup = getattr(source_utils, "_get_package_for_module", None)
    if lookup is None or hasattr(lookup, "cache_info"):
        return
    source_utils._get_package_for_module = functools.lru_cache(maxsize=None)(lookup)
