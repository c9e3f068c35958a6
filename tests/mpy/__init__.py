"""Helpers for running firmware code on the MicroPython unix port from pytest."""
