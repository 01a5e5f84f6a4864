"""The domain core of PAL Autopilot: messages, linking, outcomes and the ledger (no Azure Functions here)."""

from .message import Identity, IdentityType, MessageRejected, OnboardingRequest, parse_onboarding_message
from .outcomes import Outcome, OutcomeKind
from .settings import Settings, SettingsError

__all__ = [
    "Identity",
    "IdentityType",
    "MessageRejected",
    "OnboardingRequest",
    "Outcome",
    "OutcomeKind",
    "Settings",
    "SettingsError",
    "parse_onboarding_message",
]
