"""``full_finetune``: every weight of backbone and head trains."""

from harness.registry import STRATEGIES
from harness.strategies.base import Strategy


@STRATEGIES.register("full_finetune", description="all weights train from the pretrained init")
class FullFinetune(Strategy):
    """Pretrained init, all weights train at one learning rate."""
