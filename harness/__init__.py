"""harness: measure how to move a pretrained model onto a task, accuracy and cost, over seeds."""

__version__ = "0.3.0"
