"""Local stand-ins for the Azure services PAL Autopilot talks to (never imported by the product)."""
