"""Baysense: parking-bay sensing on ESP32 fleets."""

__version__ = "0.1.0"
