"""Data files installed with vidtok: ``demo/`` holds the short real video clips of the built-in demo dataset
(see [`vidtok.demo.demo_dir`][] and ``demo/ATTRIBUTION.md``)."""
