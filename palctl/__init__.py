"""`palctl`: the operators' command line for PAL Autopilot (enqueue onboardings, dead-letter queue)."""
