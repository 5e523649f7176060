"""Options of ``tttmedical recon``, declared once for the command line, the scene job and the panel.

``None`` defaults mean "the method's own default" (:data:`METHOD_DEFAULTS`: iterations and learning
rate of each adaptation).  Torch-free: the Slicer panel imports it.
"""
from __future__ import annotations

from ..core.options import COMMON, Option, OptionSet, output_folder_option, weights_options

METHODS = ("zero", "pretrained", "dip", "fine", "n2n", "ssdu")
MASKS = ("equispaced", "random", "poisson")
COIL_MAPS = ("calibration", "espirit")

METHOD_DEFAULTS = {
    # method: (iterations, learning rate) of the whole-backbone adaptation (per slice)
    "dip": (60, 1e-4), "fine": (60, 1e-4), "n2n": (60, 1e-4), "ssdu": (60, 1e-4),
}
STAGE_DEFAULTS = {"inr": (80, 2e-3), "sst": (60, 1e-3)}
"""D2SA stage 1 (patient level) and stage 2 (per slice): (iterations, learning rate)."""

INPUTS = OptionSet(
    Option("input", str, help="k-space (fastMRI-style HDF5 with 'kspace' [slices, coils, ky, kx], or .npy of that shape) "
                              "or, with --simulate, an image volume (NRRD, NIfTI, ...)", positional=True),
    output_folder_option(),
    *weights_options("backbone weights (.pt) instead of the bundled ones", "backbone weights"),
)
"""Files and paths (the scene layer writes these itself)."""

SIMULATION = OptionSet(
    Option("simulate", bool, False, "INPUT is an image volume: simulate undersampled multi-coil k-space from it "
                                    "(the image is kept as the reference)"),
    Option("coils", int, 8, "simulated coils", label="number of coils", minimum=1, maximum=64),
    Option("noise", float, 0.005, "simulated complex noise, standard deviation per k-space sample relative to the "
                                  "image maximum", label="noise level", minimum=0.0, maximum=1.0),
)

SAMPLING = OptionSet(
    Option("acceleration", float, 4.0, "undersampling factor (applied to simulated or fully sampled k-space)",
           minimum=1.0, maximum=64.0),
    Option("mask", str, "equispaced", "sampling pattern: 1D equispaced or random columns (fastMRI), or 2D variable-"
                                      "density Poisson disc", label="mask type", choices=MASKS),
    Option("center_fraction", float, 0.08, "fully sampled centre fraction (columns for 1D masks, square side for Poisson)",
           label="centre fraction", minimum=0.0, exclusive_minimum=True, maximum=1.0),
)

SETTINGS = SAMPLING + OptionSet(
    Option("method", str, "ssdu", "zero: zero-filled; pretrained: the bundled U-Net; dip, fine, n2n, ssdu: test-time "
                                  "adaptation of the whole U-Net per slice (DIP-TTT, data fidelity, Noisier2Noise, SSDU)",
           choices=METHODS),
    Option("inr", bool, False, "D2SA stage 1: patient-level INR modulation (FiLM) of the last decoder features"),
    Option("sst", bool, False, "D2SA stage 2: per-slice difference-convolution branches gated by an edge-stopping function"),
    Option("diffusion", bool, False, "stage 2: apply the Perona-Malik diffusion update to the output as well"),
    Option("iterations", int, None, "adaptation steps (per slice; stage 1: per patient); default per method: 60 (whole "
                                    "U-Net), 80 (stage 1), 60 (stage 2)", label="number of iterations",
           minimum=1, maximum=100000, panel_default=60),
    Option("lr", float, None, "learning rate (default per method: 1e-4 whole U-Net, 2e-3 stage 1, 1e-3 stage 2)",
           label="learning rate", minimum=0.0, exclusive_minimum=True, maximum=1.0, panel_default=0.001),
    Option("dc_weight", float, None, "weight of the network output in the final data-consistency step argmin "
                                     "||Ax - y||^2 + w ||x - f||^2 (default: w and an L1-Haar sparsity weight chosen per slice "
                                     "by self-validation; 0: no data-consistency step)", label="data-consistency weight", minimum=0.0, maximum=1e6,
           panel_default=0.1),
    Option("coil_maps", str, "calibration", "coil maps when they are not given: calibration (low-resolution "
                                            "autocalibration ratio, torch) or espirit (sigpy, when installed)",
           label="coil-map estimate", choices=COIL_MAPS),
    Option("compare", str, None, "run several methods on the same data, comma-separated METHOD[+inr][+sst] entries "
                                 "(e.g. pretrained,ssdu,ssdu+inr+sst): recon_<entry>.nii.gz each, one report; "
                                 "--method/--inr/--sst are then ignored", label="methods to compare", metavar="LIST"),
    Option("slices", str, None, "reconstruct slices A:B only (Python slice of the slice axis, e.g. 10:14)",
           label="slice range", metavar="A:B"),
    Option("figure", bool, False, "also write figure.png (reference, zero-filled, pretrained, adapted, error maps)"),
)
"""Method settings shared by the command line, ``TTTMedicalLib.recon`` and the panel."""

RECON = INPUTS + SIMULATION + SETTINGS + COMMON
