"""Typed exceptions. Every error a user can cause is a PersonaAxisError; the CLI maps them to exit code 2."""

from __future__ import annotations


class PersonaAxisError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class ModelLoadError(PersonaAxisError):
    """A model name, path or embedded package could not be resolved or loaded."""


class UnsupportedModelError(PersonaAxisError):
    """The decoder blocks of a model could not be located by structure."""


class InvalidPlanError(PersonaAxisError, ValueError):
    """An intervention plan does not fit the model (layer, size, NaN, unknown op)."""


class ChatTemplateError(PersonaAxisError):
    """A conversation could not be rendered with the model's chat template."""


class CatalogError(PersonaAxisError, ValueError):
    """A catalog file (roles, traits, questions) is malformed."""


class ArtifactError(PersonaAxisError):
    """A stored artifact is missing, corrupt, or was made for another model."""
