"""Benchmark of the data stage: the project's build against a plain serial baseline.

    make bench-data            (or: python benchmarks/bench_data.py [--source FOLDER])

Builds Flowers-17 from ../shared/data/flowers17, then the same folder listed twice, with
(1) ``competition.build.build`` and (2) a serial baseline: open with Pillow, resize the
shorter side to 256, centre-crop, append to a list, write the whole array once. Every
measurement runs in its own subprocess, which reports its wall time, CPU time (all
threads) and peak RSS. On a shared, busy machine the wall-clock speed-up understates the
parallel build; the CPU time per image does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "flowers17"
SIZE = 256


def class_files(source: Path) -> list[Path]:
    return sorted(f for d in sorted(source.iterdir()) if d.is_dir() for f in sorted(d.iterdir()) if f.is_file())


def run_project(source: Path, output: Path) -> int:
    import h5py

    from competition.build import build

    train, test = build("bench", source=source, data_root=output, image_size=SIZE, force=True)
    with h5py.File(train, "r") as a, h5py.File(test, "r") as b:
        return len(a["images"]) + len(b["images"])


def run_baseline(source: Path, output: Path) -> int:
    import h5py
    import numpy as np
    from PIL import Image

    images = []
    for path in class_files(source):
        image = Image.open(path).convert("RGB")
        scale = SIZE / min(image.size)
        image = image.resize((max(SIZE, round(image.width * scale)), max(SIZE, round(image.height * scale))))
        left, top = (image.width - SIZE) // 2, (image.height - SIZE) // 2
        images.append(np.asarray(image.crop((left, top, left + SIZE, top + SIZE))))
    output.mkdir(parents=True, exist_ok=True)
    with h5py.File(output / "baseline.h5", "w") as handle:
        handle.create_dataset("images", data=np.stack(images))
    return len(images)


RUNNERS = {"project": run_project, "baseline": run_baseline}


def measure(kind: str, source: Path) -> dict:
    """Run one measurement in a fresh subprocess; returns images, seconds, images/s and peak RSS in MiB."""
    with tempfile.TemporaryDirectory() as output:
        result = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--source", str(source), "--output", output],
            capture_output=True, text=True, check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def doubled(source: Path, folder: Path) -> Path:
    """``source`` listed twice: every class folder holds two links to each image."""
    for path in class_files(source):
        target = folder / path.parent.name
        target.mkdir(parents=True, exist_ok=True)
        for copy in ("a", "b"):
            (target / f"{copy}_{path.name}").symlink_to(path)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="an image folder, one sub-folder per class")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        start = time.perf_counter()
        count = RUNNERS[args.child](args.source, args.output)
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"images": count, "seconds": seconds, "images_per_s": count / seconds,
                          "cpu_ms_per_image": 1000 * (usage.ru_utime + usage.ru_stime) / count,
                          "peak_mib": usage.ru_maxrss / 1024}))
        return
    with tempfile.TemporaryDirectory() as scratch:
        sources = {"x1": args.source, "x2": doubled(args.source, Path(scratch) / "doubled")}
        results = {(kind, size): measure(kind, source) for size, source in sources.items() for kind in ("baseline", "project")}
    print(f"{'run':<10}{'dataset':>8}{'images':>8}{'seconds':>9}{'img/s':>8}{'CPU ms/img':>12}{'peak MiB':>10}")
    for (kind, size), r in results.items():
        print(f"{kind:<10}{size:>8}{r['images']:>8}{r['seconds']:>9.1f}{r['images_per_s']:>8.0f}"
              f"{r['cpu_ms_per_image']:>12.1f}{r['peak_mib']:>10.0f}")
    for size in sources:
        ratio = results[("project", size)]["images_per_s"] / results[("baseline", size)]["images_per_s"]
        print(f"speed-up {size}: {ratio:.2f}x the serial baseline")


if __name__ == "__main__":
    main()
