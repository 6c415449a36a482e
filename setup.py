"""Which packages are installed: every package under the folders mapped into ``ds4d_ns``.

The project's metadata is in pyproject.toml. The plugin's top-level ``method_configs/`` and
``dataparsers/`` folders are installed as ``ds4d_ns.method_configs`` and ``ds4d_ns.dataparsers``
(no global package names); setuptools' own package finder cannot prefix a folder's packages, so
they are found here, under each folder of the mapping, instead of being listed by hand.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {"ds4d_ns": "ds4d_ns", "ds4d_ns.method_configs": "method_configs", "ds4d_ns.dataparsers": "dataparsers"}
"""Installed package name -> its folder in the repository."""

setup(
    package_dir=PACKAGE_DIR,
    packages=[
        f"{name}.{sub}" if sub else name for name, folder in PACKAGE_DIR.items() for sub in ["", *find_packages(folder)]
    ],
)
