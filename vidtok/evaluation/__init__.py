"""Evaluation by the VidTok paper's protocol: PSNR / SSIM / LPIPS per frame, FVD, reports.

>>> from vidtok.evaluation import evaluate
>>> result = evaluate({"ckpt": "vidtok_kl_causal_488_4chn.ckpt", "data": {"dir": "MCL-JCV/"}})
>>> result.summary["psnr"], result.summary["ssim"]
"""

from .compare import compare
from .config import EvalConfig, EvalDataConfig, MetricsConfig, OutputConfig, TokenizerEntry
from .entry import evaluate_from_hydra
from .result import Comparison, EvalResult
from .run import evaluate

__all__ = [
    "Comparison",
    "TokenizerEntry",
    "compare",
    "EvalConfig",
    "EvalDataConfig",
    "EvalResult",
    "MetricsConfig",
    "OutputConfig",
    "evaluate",
    "evaluate_from_hydra",
]
