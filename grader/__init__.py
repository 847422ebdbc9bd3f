"""grader: grades students' transfer-learning notebooks by running them and inspecting the model."""

from __future__ import annotations

__version__ = "0.1.0"
