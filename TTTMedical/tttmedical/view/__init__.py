"""``tttmedical view OUTDIR``: a result folder in Slicer's views in a web browser (see ``command``).

The web app lives in the scene layer (``TTTMedicalLib.rendering.viewer``, next to this package in the module
folder); nothing here imports ``slicer`` or ``trame`` until the command runs.
"""
