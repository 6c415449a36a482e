"""``python -m ds4d_ns.scripts.weights METHOD``: can this machine get every pretrained model a method needs?

Prints what is missing (the checks are :mod:`ds4d_ns.pretrained`'s, which ``ns-train`` runs at set-up)
and exits 1 if anything is, 0 otherwise; the demo uses it to choose its method.
"""

from __future__ import annotations

import sys

# the check lived here before it moved to the library; these names keep working from this module
from ds4d_ns.pretrained import (  # noqa: F401
    MissingWeight,
    find_missing_weights,
    missing_weights,
    require_weights,
    summarize_missing,
    weightless_method,
)


def main() -> None:
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    from ds4d_ns.method_configs import ds4d_config

    methods = {
        spec.config.method_name: spec.config
        for spec in vars(ds4d_config).values()
        if hasattr(spec, "config") and hasattr(spec.config, "method_name")
    }
    if len(sys.argv) != 2 or sys.argv[1] not in methods:
        CONSOLE.print(f"usage: python -m ds4d_ns.scripts.weights METHOD, METHOD one of {escape(str(sorted(methods)))}")
        sys.exit(2)
    missing = find_missing_weights(methods[sys.argv[1]].pipeline)
    for problem in missing:
        CONSOLE.print(f"[yellow]{escape(problem.detail)}")
    if missing:
        CONSOLE.print(f"[yellow]{escape(summarize_missing(missing, weightless_method()))}")
        sys.exit(1)
    CONSOLE.print(f"{escape(sys.argv[1])}: every pretrained model it needs is available")


if __name__ == "__main__":
    main()
