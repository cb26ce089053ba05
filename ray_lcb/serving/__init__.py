"""The one shared LLM serving layer (see README.md in this folder)."""

from ray_lcb.serving.config import LLMServingConfig

__all__ = ["LLMServingConfig"]
