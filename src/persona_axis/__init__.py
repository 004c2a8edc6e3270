"""persona-axis: find, watch and hold the Assistant persona inside open-weight chat models."""

from .errors import (
    ArtifactError,
    CatalogError,
    ChatTemplateError,
    InvalidPlanError,
    ModelLoadError,
    PersonaAxisError,
    UnsupportedModelError,
)
from .interventions import Ablate, Add, Cap, Capture, HookEngine, InterventionPlan
from .modeling import DEFAULT_MODEL, LoadedModel, load_model, wrap_model

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Ablate",
    "Add",
    "ArtifactError",
    "Cap",
    "Capture",
    "CatalogError",
    "ChatTemplateError",
    "HookEngine",
    "InterventionPlan",
    "InvalidPlanError",
    "LoadedModel",
    "ModelLoadError",
    "PersonaAxisError",
    "UnsupportedModelError",
    "load_model",
    "wrap_model",
]
