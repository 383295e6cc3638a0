"""The shared fine-tuning engine behind `zoo adapt`: one loop for every task, family and strategy.

Importing this package is cheap; torch, accelerate and peft are imported when a run starts.
"""

from zoo.engine.config import AdaptConfig, choose_strategy

__all__ = ["AdaptConfig", "choose_strategy"]
