"""Package discovery (the rest of the metadata is in pyproject.toml).

Every folder under ``vidtok/`` is a package, found here rather than listed by hand (a hand-kept list once left
``vidtok.io`` out of the wheel). ``conf/`` stays at the top of the checkout, where Hydra users look for it, and
installs as ``vidtok/conf``: pyproject.toml's ``packages.find`` cannot add a package from outside ``vidtok/``.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["vidtok", "vidtok.*"], exclude=["*.__pycache__"]) + ["vidtok.conf"],
    package_dir={"vidtok.conf": "conf"},
)
