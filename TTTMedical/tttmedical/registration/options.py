"""Options of ``tttmedical register``, declared once for the command line, the scene job and the panel.

``None`` defaults mean "the method's own default": Reg-TTR runs 12 full-resolution iterations (each
coarser level up to twice as many) from identity and from the predictor, and 5 when refining another
tool's field, with a learning rate of 0.25 (0.05 when refining such a field) voxels per step; SSMSR trains at most 150 steps per scale.
``panel_default`` is what the panel shows when the user overrides these defaults (Reg-TTR's
from-identity values).  Torch-free: the Slicer panel imports it.
"""
from __future__ import annotations

from ..core.options import COMMON, Option, OptionSet, output_folder_option, weights_options

METHODS = ("regttr", "ssmsr", "predict")
MODALITIES = ("mri", "ct", "none")

INPUTS = OptionSet(
    Option("fixed", str, help="fixed image (NRRD, NIfTI, MHA, ...)", positional=True),
    Option("moving", str, help="moving image", positional=True),
    output_folder_option(),
    Option("init", str, help="initial transform: an ITK/Slicer transform file (.tfm, .h5, .txt), a displacement-field "
                             "image, or 'predictor' for the built-in network (default: identity)",
           label="initial transform", metavar="FILE|predictor"),
    Option("fixed_labels", str, help="label map on the fixed grid (enables Dice and HD95)", label="fixed label map"),
    Option("moving_labels", str, help="label map on the moving grid", label="moving label map"),
    *weights_options("predictor weights (.pt) instead of the bundled ones", "predictor weights"),
)
"""Files and paths (the scene layer writes these itself)."""

SETTINGS = OptionSet(
    Option("method", str, "regttr", "regttr: optimise the field itself; ssmsr: multi-scale test-time training of a "
                                    "U-Net per scale; predict: the built-in predictor only", choices=METHODS),
    Option("iterations", int, None, "Reg-TTR: max iterations at full resolution, each coarser pyramid level may use twice "
                                    "as many (default 12 from identity and from the predictor, 5 when refining another tool's field); SSMSR: max "
                                    "training steps per scale (default 150)",
           label="number of iterations", minimum=1, maximum=100000, panel_default=12),
    Option("lr", float, None, "learning rate (Reg-TTR: voxels per step; default 0.25, 0.05 when refining another tool's field; SSMSR: 0.0005)",
           label="learning rate", minimum=0.0, exclusive_minimum=True, maximum=100.0, panel_default=0.25),
    Option("smoothness", float, None, "weight of the diffusion regulariser (default 4.0; lower: sharper, rougher fields)",
           label="smoothness weight", minimum=0.0, maximum=1000.0, panel_default=4.0),
    Option("levels", int, None, "pyramid levels (default: automatic; 1 = full resolution only)",
           label="number of pyramid levels", minimum=1, maximum=8, panel_default=3),
    Option("modality", str, "mri", "image preset: mri = 0.5-99.5 percentiles; ct = soft-tissue window (-160..240 HU, clipped) "
                                   "and a Gaussian low-pass of 1 voxel against CT noise; none = intensities as they are",
           label="modality preset", choices=MODALITIES),
    Option("figure", bool, False, "also write figure.png (slices before/after, Jacobian)"),
)
"""Method settings shared by the command line, ``TTTMedicalLib.registration`` and the panel."""

REGISTER = INPUTS + SETTINGS + COMMON
