"""``scratch``: the source's architecture with random weights — the no-transfer baseline."""

from harness.registry import STRATEGIES
from harness.strategies.base import Strategy


@STRATEGIES.register("scratch", description="same architecture, random init; the baseline transfer gain is measured against")
class Scratch(Strategy):
    """Random init, all weights train (transfer gain = strategy − scratch)."""

    pretrained = False
