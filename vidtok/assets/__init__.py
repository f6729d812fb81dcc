"""Data files installed with vidtok: ``demo/`` holds the short real video clips of the built-in demo dataset
(see [`vidtok.demo.demo_dir`][] and ``demo/ATTRIBUTION.md``); ``benchmarks/`` the file lists that ``evaluate.py
benchmark=...`` checks a local copy of an evaluation set against ([`vidtok.evaluation.benchmarks`][])."""
