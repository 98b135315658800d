"""Tests of manylora.traces."""
