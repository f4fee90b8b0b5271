r"""How exposure sequences of more than two frames fuse, against the best pair of their frames.

  python benchmarks/exposure_stacks.py --data_dir DATA [--ckpt shipped] [--shots 3,5]
      [--max_photos 16] [--size 192] [--out results/exposure_stacks.md]
  python benchmarks/exposure_stacks.py --data_dir DATA --figure docs/figures/exposure_sequence.jpg

No test set here holds sequences of more than two exposures with a reference, so the sequences are
synthesised (:func:`fusionjax.data.synthetic.exposure_stack`, the camera model the MEIF stage
trains on) from the photographs the fine-tune holds back for validation (every 8th of
``clean_natural`` + ``more_natural``, ``config.data.holdout_every=8``): never a training image, never
a test set. Each sequence (darkest frame first) is fused by

- ``adjacent``: what ``fusionjax fuse`` does with more than two exposures (the multi-exposure
  stage's default, :func:`fusionjax.inference.default_sequence_rule`): the mean of the fusions of
  neighbouring frames, (S1 ⊕ S2, S2 ⊕ S3, ...);
- ``chain``: ((S1 ⊕ S2) ⊕ S3) ⊕ ..., ``--sequence chain``;
- ``extreme pair``: the darkest and the brightest frame only;
- ``best fixed pair``: the pair of frame positions with the best mean SSIM over the photographs
  (chosen on the same photographs, so optimistic);
- ``best pair (oracle)``: per sequence, of every pair of frames, the fusion closest to the reference
  (SSIM), which needs the reference and so is a bound, not a rule;
- ``mertens (no network)``: classical exposure fusion of all frames
  (:func:`fusionjax.evaluation.baselines.mertens_fusion`), the rule-based reference;

and scored on its luma against the reference (SSIM, PSNR) and against all frames (MEF-SSIM). The
last column is the share of sequences on which ``adjacent`` scores at least that row's SSIM.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax import color, imageio, inference, metrics, stages  # noqa: E402
from fusionjax.data import pipeline, readers, synthetic  # noqa: E402
from fusionjax.evaluation import baselines  # noqa: E402

PHOTO_SETS = ("clean_natural", "more_natural")
HOLDOUT_EVERY = 8
NAMES = ("SSIM", "PSNR", "MEF-SSIM")


def held_back_photos(data_dir) -> list[Path]:
  """The validation photographs of the fine-tune (``results/finetune_cpu.sh``)."""
  photos = [path for name in PHOTO_SETS for path in readers.list_images(data_dir, name)]
  return pipeline.holdout_split(photos, HOLDOUT_EVERY, held_back=True)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
  top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
  if top < 0 or left < 0:
    raise ValueError(f"a photograph of {image.shape[:2]} is smaller than --size {size}")
  return image[top : top + size, left : left + size]


def luma_levels(image: np.ndarray) -> np.ndarray:
  return np.asarray(color.split_luma_chroma(image)[0][..., 0], np.float64) * 255.0


def scores(fused, shots, reference) -> dict[str, float]:
  result = metrics.compute_metrics(
    luma_levels(fused), [luma_levels(s) for s in shots], luma_levels(reference), names=NAMES
  )
  return {name: float(result[name].value) for name in NAMES}


def contact_sheet(model, photos, n: int, args) -> None:
  """One row per photograph: its n frames, chain, adjacent, Mertens, reference (white gutters)."""
  rows = []
  for index, path in enumerate(photos):
    rng = np.random.default_rng([args.seed, index, n])
    shots, reference = synthetic.exposure_stack(
      centre_crop(imageio.load_image(path), args.size), rng, n
    )
    row = shots + [
      inference.fuse_images(model, shots, sequence="chain"),
      inference.fuse_images(model, shots, sequence="adjacent"),
      baselines.mertens_fusion(shots),
      reference,
    ]
    padded = [np.pad(image, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for image in row]
    rows.append(np.concatenate(padded, axis=1))
  imageio.save_image(args.figure, np.concatenate(rows, axis=0))
  print(
    f"wrote {args.figure}: per row {n} frames (darkest first), chain, adjacent, Mertens, reference"
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--data_dir", required=True, help="data root with clean_natural/, more_natural/"
  )
  parser.add_argument("--ckpt", default="shipped", help="MEIF stage workdir, or 'shipped'")
  parser.add_argument("--shots", default="3,5", help="sequence lengths, comma-separated")
  parser.add_argument("--max_photos", type=int, default=16)
  parser.add_argument("--size", type=int, default=192, help="side of the centre crop")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="also write the Markdown table here")
  parser.add_argument(
    "--figure",
    default=None,
    help="only draw a contact sheet: the frames, chain, adjacent, Mertens and the reference of the "
    "first two photographs' longest sequence",
  )
  args = parser.parse_args(argv)
  try:
    lengths = [int(n) for n in args.shots.split(",")]
    photos = held_back_photos(args.data_dir)[: args.max_photos]
  except (ValueError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  if any(n < 3 for n in lengths):
    print("error: --shots takes lengths of 3 or more (2 is a pair)", file=sys.stderr)
    return 2
  model = stages.load_model(None if args.ckpt == "shipped" else args.ckpt, task="meif")
  if args.figure:
    contact_sheet(model, photos[:2], max(lengths), args)
    return 0
  lines = [
    f"Exposure sequences synthesised from {len(photos)} held-back photographs ({args.size} px "
    f"crops), fused by the MEIF stage {model.path} (step {model.step}); means over the photographs.",
    "",
    "| frames | rule | " + " | ".join(NAMES) + " | adjacent ≥ rule (SSIM) |",
    "|---:|---|" + "---:|" * (len(NAMES) + 1),
  ]
  for n in lengths:
    rows = {"adjacent": [], "chain": [], "extreme pair": [], "mertens (no network)": []}
    pair_rows: dict = {}
    for index, path in enumerate(photos):
      rng = np.random.default_rng([args.seed, index, n])
      shots, reference = synthetic.exposure_stack(
        centre_crop(imageio.load_image(path), args.size), rng, n
      )
      for rule in ("adjacent", "chain"):
        fused = inference.fuse_images(model, shots, sequence=rule)
        rows[rule].append(scores(fused, shots, reference))
      rows["mertens (no network)"].append(scores(baselines.mertens_fusion(shots), shots, reference))
      for i, j in itertools.combinations(range(n), 2):
        fused = inference.fuse_images(model, [shots[i], shots[j]])
        pair_rows.setdefault((i, j), []).append(scores(fused, shots, reference))
      print(
        f"{n} frames, {path.name}: adjacent SSIM {rows['adjacent'][-1]['SSIM']:.4f}, chain "
        f"{rows['chain'][-1]['SSIM']:.4f}",
        flush=True,
      )
    rows["extreme pair"] = pair_rows[(0, n - 1)]
    fixed = max(pair_rows, key=lambda pair: np.mean([v["SSIM"] for v in pair_rows[pair]]))
    rows[f"best fixed pair {fixed}"] = pair_rows[fixed]
    rows["best pair (oracle)"] = [
      max((pair_rows[pair][k] for pair in pair_rows), key=lambda v: v["SSIM"])
      for k in range(len(photos))
    ]
    adjacent_ssim = np.array([v["SSIM"] for v in rows["adjacent"]])
    for rule, values in rows.items():
      means = [np.mean([v[name] for v in values]) for name in NAMES]
      wins = np.mean(adjacent_ssim >= np.array([v["SSIM"] for v in values]) - 1e-12)
      lines.append(
        f"| {n} | {rule} | " + " | ".join(f"{m:.4f}" for m in means) + f" | {wins:.0%} |"
      )
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    Path(args.out).write_text(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
