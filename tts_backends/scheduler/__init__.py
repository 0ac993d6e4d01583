"""The worker's scheduler: priority queues, load shedding, and (continuous) batching."""

from .levels import LEVELS, parse_level
from .policy import SchedulerPolicy
from .scheduler import Scheduler
from .ticket import Ticket

__all__ = ["LEVELS", "Scheduler", "SchedulerPolicy", "Ticket", "parse_level"]
