"""reasoning-operator: a kopf operator that turns one ReasoningRun into curation, LoRA SFT, Triton serving
and evaluation. Importing this package is cheap: the operator shell and the jobs load lazily."""

__version__ = "0.1.0"
