"""Execution models: how a planned trade becomes a fill. Simulated now; an exchange adapter later."""

from tradeexecutor.execution.model import ExecutionModel, Fill
from tradeexecutor.execution.simulated import SimulatedExecution

__all__ = ["ExecutionModel", "Fill", "SimulatedExecution"]
