"""manylora.analysis"""
