"""manylora.traces"""
