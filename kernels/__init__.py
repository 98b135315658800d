"""manylora.kernels"""
