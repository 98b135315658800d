"""manylora.engine"""
