"""Profilers (local ONNX Runtime, remote device agent), block latency tables, learned predictor.

Empty until the latency work lands; see DESIGN.md section 4.
"""
