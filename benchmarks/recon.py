"""Reconstruction benchmark: AdaptRecon's methods against SENSE, L1-wavelet CS (sigpy) and BART pics.

Domains (multi-coil k-space simulated on a 2x finer grid, :mod:`tttmedical.recon.simulate`; 128 x 128,
8 coils, equispaced 1D masks with centre fraction 0.08): ``source`` (the backbone's training domain:
mrphantom T1-weighted body slices at 2x), and one shift each: ``anatomy`` (MNI152 brain at 2x),
``anatomy-4x`` (brain at 4x: anatomy and acceleration together), ``contrast`` (T2-weighted phantom
at 2x), ``acceleration`` (phantom at 4x), ``noise`` (phantom at 2x with 4x the noise) and ``real``
(pydicom-data MR images, run only when that package is installed).

Methods: zero-filled and the pretrained U-Net (made data consistent; ``pretrained-nodc``: its raw output), whole-backbone test-time
adaptation (``dip``, ``fine``, ``n2n``, ``ssdu``), the same losses with D2SA stages (``+inr+sst``;
``ssdu+inr`` and ``ssdu+sst`` alone), and the classical peers on the same data and coil maps:
SENSE by CG (ours, Tikhonov 1e-3), sigpy ``L1WaveletRecon`` and ``bart pics -l1 -S`` (Debian's bart).
``sense-full`` (not a method): SENSE from the fully sampled (noisy) k-space, the measurements' own
ceiling; the reference is fastMRI-style, the RSS of the noise-free fully sampled simulated k-space
(:mod:`tttmedical.recon.simulate`), so this ceiling is set by the noise alone.
Learned methods run through the engine's pipeline (``tttmedical.recon.pipeline.reconstruct`` with
``--compare``: one shared set of coil maps and baselines per domain); times are the adaptation wall
time per slice (the engine report's ``adapt_s`` / slices), peers are timed per slice the same way.

Usage: ``python benchmarks/recon.py [--quick] [--methods ...] [--domains ...] [--threads N]``;
results go to ``--output`` (default ``bench-output``) as ``recon[-quick]-<date>.md/.json`` plus a
figure ``recon[-quick]-<date>.png`` (the anatomy shift).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402  benchmarks/harness.py: machine, versions, arguments, timing, tables, result files

LEARNED = ("zero", "pretrained", "pretrained-nodc", "dip", "fine", "n2n", "ssdu", "dip+inr+sst", "fine+inr+sst", "n2n+inr+sst",
           "ssdu+inr+sst", "ssdu+inr", "ssdu+sst")
PEERS = ("sense-cg", "l1-wavelet", "bart-pics", "sense-full")
METHODS = LEARNED + PEERS
DOMAINS = {
    "source": ("phantom t1", 2.0, 0.005, "mrphantom T1-weighted body slices at 2x (the training domain)"),
    "anatomy": ("brain", 2.0, 0.005, "MNI152 T1 brain slices at 2x (anatomy shift)"),
    "anatomy-4x": ("brain", 4.0, 0.005, "MNI152 T1 brain slices at 4x (anatomy and acceleration shift)"),
    "contrast": ("phantom t2", 2.0, 0.005, "mrphantom T2-weighted body slices at 2x (contrast shift)"),
    "acceleration": ("phantom t1", 4.0, 0.005, "mrphantom T1-weighted body slices at 4x (acceleration shift)"),
    "noise": ("phantom t1", 2.0, 0.02, "mrphantom T1-weighted body slices at 2x with 4x the noise (noise shift)"),
    "real": ("dicom", 2.0, 0.0, "real scanner MR images from pydicom-data (a Siemens abdomen and a shoulder slice: real noise and texture), 8-coil k-space simulated at 2x without added noise"),
}
L1_LAMBDA, BART_LAMBDA = 0.001, 0.005


@dataclasses.dataclass
class Settings:
    slices: int
    size: int = 128
    coils: int = 8
    centre_fraction: float = 0.08
    iterations: int | None = None       # None: the engine's defaults (60 whole U-Net, 80 stage 1, 60 stage 2)
    dip_iterations: int = 200           # DIP-TTT runs longer (its early stopping decides)
    timing_256: bool = True

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        return cls(slices=2, iterations=30, dip_iterations=80) if quick else cls(slices=4)


# ====================================================================== data
def domain_images(name: str, settings: Settings, seed: int) -> np.ndarray:
    from tttmedical.recon.domains import brain_slices, phantom_slices

    kind = DOMAINS[name][0]
    if kind == "brain":
        return brain_slices(settings.slices, settings.size)
    if kind.startswith("phantom"):
        return phantom_slices(settings.slices, settings.size, kind.split()[1], seed + 500)  # other draws than training
    from tttmedical.core.errors import InputError
    from tttmedical.recon.domains import scanner_slices

    try:
        return scanner_slices(settings.slices, settings.size)
    except InputError as error:
        raise H.Unavailable(str(error)) from None


def simulate(name: str, settings: Settings, seed: int):
    from tttmedical.core.volume import Volume
    from tttmedical.recon.kspace import KSpace
    from tttmedical.recon.masks import make_mask
    from tttmedical.recon.simulate import simulate_kspace

    _, acceleration, noise, _ = DOMAINS[name]
    images = domain_images(name, settings, seed)
    sim = simulate_kspace(images, settings.coils, noise, seed)
    mask = make_mask("equispaced", images.shape[1:], acceleration, settings.centre_fraction, seed)
    maps = np.broadcast_to(sim.maps, (len(images), *sim.maps.shape))
    data = KSpace(sim.kspace * mask, mask, Volume(np.zeros(images.shape, np.float32)), sim.reference, maps,
                  {"simulated": True, **sim.info, "domain": name})
    FULLY_SAMPLED[id(data)] = sim.kspace
    return data


FULLY_SAMPLED = {}   # id(KSpace) -> its fully sampled k-space (for the sense-full ceiling only)


# ====================================================================== runners
def run_learned(data, methods, settings: Settings, workdir: Path, seed: int, weights: str | None = None) -> dict:
    """Every learned method through the engine's pipeline (one compare run; DIP-TTT separately for its budget)."""
    from tttmedical.recon.pipeline import ReconOptions, reconstruct

    out = {}
    groups = [[m for m in methods if m not in ("dip", "pretrained-nodc")], ["dip"] if "dip" in methods else [],
              ["pretrained"] if "pretrained-nodc" in methods else []]
    for n, (group, iterations) in enumerate(zip(groups, (settings.iterations, settings.dip_iterations, None))):
        if not group:
            continue
        folder = workdir / ("compare", "dip", "nodc")[n]
        shutil.rmtree(folder, ignore_errors=True)
        # --compare needs two distinct entries; the filler's results are not kept
        entries = group if len(group) > 1 else group + ["pretrained" if group == ["zero"] else "zero"]
        report = reconstruct(data, folder, ReconOptions(compare=",".join(entries), iterations=iterations, seed=seed,
                                                        device="cpu", weights=weights, dc_weight=0.0 if n == 2 else None))
        images = {}
        for run in report["compare"]:
            if run["label"] not in group:
                continue
            if n == 2:
                run = {**run, "label": "pretrained-nodc"}
            from tttmedical.core.volume import Volume

            images[run["label"]] = Volume.read(folder / run["file"]).array
            extra = {}
            record = run.get("self_validation") or {}
            if record.get("backbone"):
                extra["best_steps"] = [r["best_step"] for r in record["backbone"]]
            if record.get("inr"):
                extra["inr_best_step"] = record["inr"]["best_step"]
            if record.get("sst"):
                extra["sst_best_steps"] = [r["best_step"] for r in record["sst"]["slices"]]
            out[run["label"]] = {"metrics": run["metrics"], "wall_s": run["adapt_s"] / len(data.data),
                                 "image": images[run["label"]], "extra": extra}
    return out


def _per_slice(data, fn) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    images = np.stack([fn(s) for s in range(len(data.data))]).astype(np.float32)
    return (time.perf_counter() - t0) / len(data.data), images


def run_sense(data, **_):
    import torch

    from tttmedical.recon.physics import sense_cg

    mask = torch.from_numpy(data.mask.astype(np.float32))
    return _per_slice(data, lambda s: sense_cg(torch.from_numpy(data.data[s]), torch.from_numpy(np.ascontiguousarray(data.maps[s])),
                                               mask, 30, 1e-3).abs().numpy())


def run_l1(data, **_):
    H.require("sigpy")
    import sigpy.mri.app as app

    def one(s):
        k = data.data[s]
        scale = float(np.sqrt((np.abs(np.fft.ifft2(k, norm="ortho")) ** 2).sum(0)).max()) or 1.0  # RSS zero-filled max
        x = app.L1WaveletRecon(k / scale, np.ascontiguousarray(data.maps[s]), L1_LAMBDA, show_pbar=False, max_iter=100).run()
        return np.abs(x) * scale
    return _per_slice(data, one)


def _write_cfl(path: Path, array: np.ndarray) -> None:
    array = np.asarray(array, np.complex64)
    dims = list(array.shape) + [1] * (16 - array.ndim)
    path.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asfortranarray(array).ravel(order="F").tofile(path.with_suffix(".cfl"))


def _read_cfl(path: Path) -> np.ndarray:
    dims = [int(x) for x in path.with_suffix(".hdr").read_text().split("\n")[1].split()]
    return np.fromfile(path.with_suffix(".cfl"), np.complex64)[:int(np.prod(dims))].reshape(dims, order="F")


def run_bart(data, **_):
    exe = shutil.which("bart")
    if not exe:
        raise H.Unavailable("bart is not installed (apt-get install bart)")

    def one(s):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            _write_cfl(tmp / "k", np.transpose(data.data[s], (1, 2, 0))[:, :, None, :])      # [ky, kx, 1, coils]
            _write_cfl(tmp / "s", np.transpose(data.maps[s], (1, 2, 0))[:, :, None, :])
            subprocess.run([exe, "pics", "-l1", "-r", str(BART_LAMBDA), "-S", str(tmp / "k"), str(tmp / "s"), str(tmp / "o")],
                           check=True, capture_output=True)
            return np.abs(_read_cfl(tmp / "o").reshape(data.data.shape[-2:]))
    return _per_slice(data, one)


def run_sense_full(data, **_):
    """SENSE from the *fully sampled* k-space: what the measurements themselves say about the image
    (differs from the noise-free RSS reference by the noise only: a ceiling for data-consistent methods)."""
    import torch

    from tttmedical.recon.physics import sense_cg

    full = FULLY_SAMPLED[id(data)]
    ones = torch.ones(full.shape[-2:])
    return _per_slice(data, lambda s: sense_cg(torch.from_numpy(full[s]), torch.from_numpy(np.ascontiguousarray(data.maps[s])),
                                               ones, 30, 1e-3).abs().numpy())


PEER_RUNNERS = {"sense-cg": run_sense, "l1-wavelet": run_l1, "bart-pics": run_bart, "sense-full": run_sense_full}


def timing_256(seed: int) -> dict:
    """Wall time of ssdu+inr+sst (engine defaults) on one 256 x 256, 8-coil brain slice at 4x."""
    from tttmedical.core.volume import Volume
    from tttmedical.recon.domains import brain_slices
    from tttmedical.recon.kspace import KSpace
    from tttmedical.recon.masks import make_mask
    from tttmedical.recon.pipeline import ReconOptions, reconstruct
    from tttmedical.recon.simulate import simulate_kspace

    images = brain_slices(1, 256, 0.5, 0.5)
    sim = simulate_kspace(images, 8, 0.005, seed)
    mask = make_mask("equispaced", (256, 256), 4.0, 0.08, seed)
    data = KSpace(sim.kspace * mask, mask, Volume(np.zeros(images.shape, np.float32)), sim.reference, sim.maps[None], {})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = reconstruct(data, Path(tmp) / "out", ReconOptions(method="ssdu", inr=True, sst=True, seed=seed, device="cpu"))
        total = time.perf_counter() - t0
    return {"method": "ssdu+inr+sst", "shape": [256, 256], "coils": 8, "acceleration": 4.0, "adapt_s": report["timings"]["adapt_s"],
            "total_s": total, "psnr": report["metrics"]["psnr"], "psnr_pretrained": report["baseline_pretrained"]["psnr"]}


# ====================================================================== tables and goals
def domain_table(results: dict) -> str:
    rows = []
    for key, r in results.items():
        if r.get("status") != "ok":
            rows.append([key, "–", "–", "–", "–", "–", "–", r.get("status", "") + ": " + r.get("error", "")])
            continue
        rows.append([key, H.fmt(r["psnr"], 2), H.fmt(r["ssim"], 3), H.fmt(r["nmse"], 4), H.fmt_time(r["wall_s"]),
                     H.fmt_time(r["patient_s"]), H.fmt_ratio(r.get("ratio")), ""])
    return H.table(["method", "PSNR (dB)", "SSIM", "NMSE", "s / slice", "s / patient", "time × DIP-TTT", "note"], rows)


def goals(all_results: dict) -> list[dict]:
    out = []
    res = all_results.get("anatomy", {})
    d2sa = res.get("ssdu+inr+sst", {})
    ok = lambda k: res.get(k, {}).get("status") == "ok"
    if ok("ssdu+inr+sst") and ok("pretrained"):
        gain = d2sa["psnr"] - res["pretrained"]["psnr"]
        out.append({"goal": "D2SA (ssdu+inr+sst) beats the pretrained backbone by >= 2 dB", "value": f"{gain:+.2f} dB",
                    "met": gain >= 2.0})
    if ok("ssdu+inr+sst") and ok("dip"):
        reached = d2sa["psnr"] >= res["dip"]["psnr"]
        ratio = d2sa["wall_s"] / res["dip"]["wall_s"]
        out.append({"goal": "D2SA reaches DIP-TTT's PSNR in at most 1/3 of DIP-TTT's time",
                    "value": f"{d2sa['psnr'] - res['dip']['psnr']:+.2f} dB vs DIP-TTT at {ratio:.2f}x its time",
                    "met": bool(reached and ratio <= 1 / 3)})
    for peer in ("l1-wavelet", "bart-pics"):
        if ok("ssdu+inr+sst") and ok(peer):
            gain = d2sa["psnr"] - res[peer]["psnr"]
            out.append({"goal": f"D2SA beats {peer} by >= 1 dB", "value": f"{gain:+.2f} dB", "met": gain >= 1.0})
    return out


def markdown(doc: dict) -> str:
    lines = H.Run.header(doc, "Reconstruction benchmark", time_note=f" (data {doc['data_s']:.0f} s)")
    s = doc["settings"]
    lines += [f"{s['slices']} slice(s) of {s['size']}², {s['coils']} coils per domain; equispaced masks, centre fraction "
              f"{s['centre_fraction']}; iterations {s['iterations'] or 'engine defaults'} (DIP-TTT {s['dip_iterations']}). "
              "k-space simulated from images on a 2x finer grid (no inverse crime); reference: fully sampled RSS of the "
              "simulated k-space (noise-free), as fastMRI's reconstruction_rss; metrics on magnitudes with fastMRI's "
              "conventions (PSNR/SSIM data range = the reference volume's maximum).", ""]
    for name, res in doc["results"].items():
        lines += [f"## {name}", "", DOMAINS[name][3] + ".", "", domain_table(res), ""]
    if doc["skipped_domains"]:
        lines += ["## Domains not run", ""] + [f"- {k}: {v}" for k, v in doc["skipped_domains"].items()] + [""]
    if doc.get("timing_256"):
        t = doc["timing_256"]
        lines += ["## One 256² 8-coil slice", "", f"ssdu+inr+sst at 4x on a brain slice: adaptation {t['adapt_s']:.1f} s, "
                  f"whole command {t['total_s']:.1f} s; PSNR {t['psnr']:.2f} dB (pretrained {t['psnr_pretrained']:.2f} dB).", ""]
    if doc["goals"]:
        lines += ["## Goals of issue 8 (anatomy shift)", "", H.table(["Goal", "Value", "Met"],
                  [[g["goal"], g["value"], "yes" if g["met"] else "**no**"] for g in doc["goals"]], numeric=False), ""]
    lines += ["## Notes", "",
              "- Every network output f (pretrained and adapted alike) is made data consistent: argmin ||Ax - y||² + "
              "w ||x - f||² + l s ||Haar details of x||₁ on all acquired samples with the coil maps (CG when l = 0, else 30 "
              "FISTA steps from f; s the zero-filled maximum), (w, l) per slice by self-validation among the engine's "
              "candidates (tttmedical.recon.problem.DC_CANDIDATES) and no step, whichever predicts the held-out samples "
              "best; 5 % of the acquired samples outside the calibration box are held out for self-validation in every "
              "adapted method. pretrained-nodc: the network output without this step.",
              "- Whole-backbone methods adapt all U-Net weights per slice; D2SA stages freeze the backbone and adapt the "
              "INR/FiLM (stage 1, all slices together) and difference-convolution branches (stage 2, per slice) on cached "
              "activations.",
              f"- Peers get the same k-space and the same (simulation's) coil maps. Regularisation weights: sigpy L1-wavelet "
              f"{L1_LAMBDA} (k-space scaled so that the RSS zero-filled maximum is 1), bart pics -l1 -r {BART_LAMBDA} -S; both "
              "picked from {0.001, 0.005, 0.02} on one brain slice at 4x (in the peers' favour). SENSE-CG: 30 iterations, "
              "Tikhonov 1e-3.",
              "- Time: wall seconds per slice of the reconstruction alone (learned: the engine's adapt time / slices; D2SA's "
              "stage 1 is shared by the slices), on a 2-core machine shared with other jobs (see the load averages).",
              "- s / patient: the same for all the domain's slices (one patient; D2SA's stage 1 runs once per patient).",
              "- time × DIP-TTT: seconds per slice relative to DIP-TTT's on the same domain.",
              "- sense-full is not a method: SENSE (30 CG steps) from the fully sampled noisy k-space, i.e. what the "
              "measurements themselves say about the image. The reference is the RSS of the same k-space without its noise "
              "(fastMRI-style: the reconstruction of the fully sampled data, not the image it was simulated from), so this "
              "ceiling is set by the noise only."]
    return "\n".join(lines) + "\n"


def figure(path: Path, reference: np.ndarray, images: dict, title: str) -> None:
    from tttmedical.core.figures import Panel, slice_panels

    k = reference.shape[0] // 2
    top = float(reference.max()) or 1.0
    keys = [m for m in ("zero", "pretrained", "dip", "ssdu", "ssdu+inr+sst", "l1-wavelet", "bart-pics") if m in images]
    panels = [Panel("reference", reference[k] / top)] + [Panel(m, images[m][k] / top) for m in keys]
    panels += [Panel(f"|err| {m}", np.abs(images[m][k] - reference[k]) / top, "magma", (0, 0.15)) for m in keys
               if m in ("pretrained", "ssdu+inr+sst", "l1-wavelet")]
    slice_panels(path, panels, title)


# ====================================================================== main
def main(argv=None) -> int:
    p = H.base_parser("recon", "Reconstruction benchmark: zero-filled, pretrained U-Net, DIP-TTT/fine/N2N/SSDU with and "
                               "without D2SA stages, SENSE-CG, sigpy L1-wavelet and bart pics per domain shift.", METHODS,
                      quick_help="2 slices per domain and fewer iterations")
    p.add_argument("--domains", default=",".join(DOMAINS), help=f"comma-separated subset of: {', '.join(DOMAINS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="backbone weights (default: the bundled ones)")
    p.add_argument("--no-256", dest="timing_256", action="store_false", help="skip the 256² timing")
    args = p.parse_args(argv)
    methods = H.choose(p, args.methods, METHODS)
    domains = H.choose(p, args.domains, DOMAINS, "domain")
    H.set_threads(args.threads)
    import torch

    bench = H.Run("recon", args.quick, argv, extra_dists=("monai", "nilearn", "mrphantom", "h5py"))
    settings = Settings.make(args.quick)
    output = Path(args.output)
    workdir = output / "runs" / "recon"
    H.log(f"machine: {H.cpu_model()}, {os.cpu_count()} cores, load {bench.loadavg_start}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); methods {', '.join(methods)}")
    results, skipped, data_s, figure_data = {}, {}, 0.0, None
    for name in domains:
        t0 = time.perf_counter()
        data, problem = H.guarded(lambda: simulate(name, settings, args.seed))
        data_s += time.perf_counter() - t0
        if problem:
            skipped[name] = problem["error"]
            H.log(f"{name}: {problem['status']}: {problem['error']}")
            continue
        res, images = {}, {}
        learned = [m for m in methods if m in LEARNED]
        done, problem = H.guarded(lambda: run_learned(data, learned, settings, workdir / name, args.seed, args.weights))
        for m in learned:
            if problem:
                res[m] = dict(problem)
                continue
            r = done[m]
            res[m] = {"status": "ok", "psnr": r["metrics"]["psnr"], "ssim": r["metrics"]["ssim"], "nmse": r["metrics"]["nmse"],
                      "wall_s": r["wall_s"], "extra": r["extra"]}
            images[m] = r["image"]
        for m in (m for m in methods if m in PEERS):
            done_peer, problem = H.guarded(lambda: PEER_RUNNERS[m](data))
            if problem:
                res[m] = dict(problem)
                continue
            seconds, image = done_peer
            from tttmedical.recon.evaluation import slice_metrics

            scores = slice_metrics(data.reference, image)
            res[m] = {"status": "ok", "psnr": scores["psnr"], "ssim": scores["ssim"], "nmse": scores["nmse"], "wall_s": seconds}
            images[m] = image
        for r in res.values():
            if r.get("status") == "ok":
                r["patient_s"] = r["wall_s"] * len(data.data)   # the domain's slices are one patient
        H.add_ratios(res, "dip")
        for m, r in res.items():
            H.log(f"{name:12s} {m:14s} " + (f"PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  {r['wall_s']:7.2f} s/slice"
                                              if r.get("status") == "ok" else f"{r['status']}: {r['error']}"))
        results[name] = res
        if name == "anatomy" or (figure_data is None and name == domains[-1]):
            figure_data = (name, data.reference, images)
        print("\n## " + name + "\n\n" + domain_table(res) + "\n", flush=True)
    t256 = None
    if settings.timing_256 and args.timing_256:
        t256, problem = H.guarded(lambda: timing_256(args.seed))
        H.log(f"256² slice: {t256 if t256 else problem}")
    machine = H.machine_info(torch_threads=torch.get_num_threads(), device="cpu")
    doc = bench.document(machine, data_s=data_s, methods=methods, settings=dataclasses.asdict(settings),
                         lambdas={"l1_wavelet": L1_LAMBDA, "bart_pics": BART_LAMBDA}, results=results,
                         skipped_domains=skipped, timing_256=t256, goals=goals(results))
    md, js = bench.write(output, doc, markdown(doc))
    if figure_data is not None:
        name, reference, images = figure_data
        figure(md.with_suffix(".png"), reference, images, f"{name} shift: middle slice, magnitudes / reference maximum")
    H.log(f"wrote {md}, {js}")
    return 1 if H.any_failed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
