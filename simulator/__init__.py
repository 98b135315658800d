"""manylora.simulator"""
