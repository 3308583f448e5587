"""Periodic zero-shot evaluation during pretraining, through `evaluate_suite` when its protocols are installed.

The adapter wraps the model being trained (no copy, no reload) in `evaluate_suite.models.OphCLIPEncoder` and runs the
benchmark's zero-shot protocol (`zero_shot_phase` or `zero_shot_instruments`, by the benchmark's task). When
`evaluate_suite.protocols` is not importable the evaluation is skipped with one log line.
"""

import logging
import numbers


logger = logging.getLogger(__name__)


def protocols_available() -> bool:
    try:
        import evaluate_suite.models  # noqa: F401
        import evaluate_suite.protocols  # noqa: F401
    except ImportError:
        return False
    return True


class ZeroShotEvaluator:
    """Zero-shot evaluation of the model being trained on one registered benchmark.

    Args:
        benchmark: registry name, e.g. `"ophvl-mini-phase"`.
        root: the benchmark's local folder.
        split: the split evaluated.
        fps: frames per second sampled from each video.
        batch_size: frames per forward pass.
    """

    def __init__(self, benchmark: str, root: str, split: str = "test", fps: float = 1.0, batch_size: int = 32):
        self.benchmark = benchmark
        self.root = root
        self.split = split
        self.fps = fps
        self.batch_size = batch_size
        self.available = protocols_available()
        if not self.available:
            logger.warning("periodic evaluation skipped: evaluate_suite.protocols is not available")

    def __call__(self, model, processor, step: int) -> dict[str, float]:
        """Evaluate `model` (left in eval mode: the caller restores training mode) and return `eval/<metric>`
        numbers."""
        if not self.available:
            return {}
        from evaluate_suite.models import OphCLIPEncoder
        from evaluate_suite.protocols import zero_shot_instruments, zero_shot_phase
        from evaluate_suite.registry import get_benchmark

        spec = get_benchmark(self.benchmark)
        protocol = zero_shot_phase if spec.task == "phase" else zero_shot_instruments
        encoder = OphCLIPEncoder(model, processor, model_id=f"step-{step}")
        result = protocol(encoder, spec.name, self.root, split=self.split, fps=self.fps, batch_size=self.batch_size,
                          results_file=None)
        return {f"eval/{name}": float(value) for name, value in result["metrics"].items()
                if isinstance(value, numbers.Number) and not isinstance(value, bool)}


__all__ = ["ZeroShotEvaluator", "protocols_available"]
