"""The base class of every component config.

Each component owns a small config next to its code (``RetrieverConfig`` in
``retrieval/``); ``ray_lcb.config`` composes them. Unknown keys are errors, so
a typo in a preset or a ``--set`` override fails at parse time.
"""

from pydantic import BaseModel, ConfigDict


class ComponentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
