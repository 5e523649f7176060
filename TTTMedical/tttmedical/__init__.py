"""TTTMedical engine: test-time training for medical images.

Sub-packages: ``core`` (volumes, warps, losses, metrics, devices, reports, progress), ``data``
(sample data), ``registration`` (Reg-TTR, SSMSR, predictor).  Never imports slicer or qt.
"""
__version__ = "0.1.0"
