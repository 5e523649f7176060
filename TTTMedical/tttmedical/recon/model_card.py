"""The Markdown model card of the reconstruction backbone (the JSON card is authoritative), in the
layout every bundled network's card shares (:mod:`tttmedical.core.model_card`)."""
from __future__ import annotations

from ..core.model_card import command_section, weights_rows


def model_card_markdown(card: dict) -> str:
    t, d = card.get("training", {}), card.get("data", {})
    curve = t.get("loss_curve_every_50") or []
    first = f"{curve[0]['loss']:.4f} -> " if curve else ""
    lines = [f"# {card['name']}: AdaptRecon backbone", "",
             card.get("architecture", ""), "",
             *weights_rows(card),
             f"| format | `{card['format']}` |",
             f"| training | {t.get('steps_done')} of {t.get('steps')} steps, batch {t.get('batch')}, seed {t.get('seed')}, "
             f"{t.get('train_s', 0.0) / 60:.1f} min on {t.get('device')} |",
             f"| loss first step -> final | {first}{t.get('final_loss', float('nan')):.4f} |",
             f"| optimiser | Adam, lr {t.get('lr')} -> {t.get('lr_final')} (cosine); bf16 autocast {t.get('autocast_bf16')} |",
             "", *command_section(card.get("training_command", "")),
             "## Training data (simulated offline with mrphantom, no download)", "",
             f"{d.get('description', '')}: {d.get('slices')} slices of {d.get('size')}^2, {d.get('coils')} coils, "
             f"{d.get('acceleration')}x {'/'.join(d.get('masks', []))} masks, centre fraction {d.get('centre_fraction')}.", ""]
    evaluation = card.get("evaluation")
    if evaluation:
        lines += ["## Evaluation", "", evaluation.get("note", ""), "",
                  "| domain | acceleration | mask | slices | PSNR zero-filled | PSNR network | SSIM zero-filled | SSIM network |",
                  "|---|---|---|---|---|---|---|---|"]
        for domain in ("source", "brain"):
            for r in evaluation.get(domain, []):
                lines.append(f"| {domain} | {r['acceleration']:g}x | {r['mask']} | {r['slices']} | {r['psnr_zero']:.2f} | "
                             f"{r['psnr_pretrained']:.2f} | {r['ssim_zero']:.3f} | {r['ssim_pretrained']:.3f} |")
    lines += ["", "## Limits", "",
              "- Trained on simulated phantom body slices only: brains, other contrasts, real scanners, other",
              "  accelerations are out of distribution; adapt at test time (`tttmedical recon --method ... --inr --sst`).",
              "- Inputs are coil-combined zero-filled images with coil maps normalised to sum |S|^2 = 1.", ""]
    return "\n".join(lines)
