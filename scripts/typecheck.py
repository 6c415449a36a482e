"""Type-check the project with mypy, configured in pyproject.toml ``[tool.mypy]``.

Plain ``mypy`` cannot see ``ds4d_ns.method_configs`` and ``ds4d_ns.dataparsers``: they live in the
top-level ``method_configs/`` and ``dataparsers/`` folders and are mapped under ``ds4d_ns`` by
setup.py's ``PACKAGE_DIR`` (an editable install resolves them with an import hook mypy does not
run). So this script reads that mapping from setup.py and hands mypy every file of a mapped folder
under its installed module name, beside the ``files`` of the configuration.

Usage: ``.venv/bin/python scripts/typecheck.py [extra mypy flags]`` (``bash scripts/typecheck.sh``
sets up first). Exit status 0 when no errors, 1 otherwise, 2 when mypy itself fails.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path
from typing import Dict, List

from mypy import build
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def package_dir(setup_py: Path) -> Dict[str, str]:
    """setup.py's ``PACKAGE_DIR`` (installed package name -> folder), read without running setup.py."""
    for node in ast.parse(setup_py.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PACKAGE_DIR" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit(f"[typecheck] no PACKAGE_DIR assignment in {setup_py}: the mapping moved; update {__file__}")


def mapped_sources(mapping: Dict[str, str]) -> List[BuildSource]:
    """Every module of the folders mapped to another package name, named as installed."""
    sources = []
    for package, folder in mapping.items():
        if package == folder:
            continue  # an ordinary package: the configuration's ``files`` find it by its folder
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [part for part in path.relative_to(ROOT / folder).with_suffix("").parts if part != "__init__"]
            sources.append(BuildSource(str(path.relative_to(ROOT)), ".".join([package, *parts]), None))
    return sources


def main(argv: List[str]) -> int:
    fscache = FileSystemCache()
    # With no file arguments mypy checks the configuration's ``files``.
    sources, options = process_options(argv, fscache=fscache)
    sources += mapped_sources(package_dir(ROOT / "setup.py"))
    messages: List[str] = []

    def flush(_filename: str | None, new_messages: List[str], _serious: bool) -> None:
        messages.extend(new_messages)
        for message in new_messages:
            print(message, flush=True)

    start = time.perf_counter()
    try:
        build.build(sources, options, None, flush, fscache, sys.stdout, sys.stderr)
    except CompileError as error:  # a syntax error or a blocking configuration problem
        for message in error.messages:
            if message not in messages:
                print(message)
        return 2
    errors = [message for message in messages if ": error: " in message]
    files = {message.split(":", 1)[0] for message in errors}
    checked = f"{len(sources)} source files, {time.perf_counter() - start:.0f} s"
    if errors:
        print(f"Found {len(errors)} errors in {len(files)} files (checked {checked})")
        return 1
    print(f"Success: no issues found (checked {checked})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
