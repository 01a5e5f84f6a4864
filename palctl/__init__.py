"""`palctl`: the operators' command line for PAL Autopilot (enqueue onboardings, the dead-letter queue,
admin-consent links, retiring an identity's record, its own settings); see docs/palctl.md."""
