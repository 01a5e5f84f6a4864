"""Repair, opt-in: make resources the audit found not attributed credit the partner, where
Microsoft's APIs allow it, only through a plan an operator approved (plan.py, service.py)."""
