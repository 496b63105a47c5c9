"""Benchmark of the features stage (``make bench-features``): throughput and peak memory.

For each backbone (random weights) it measures, each in its own child process so that
peak RSS is that measurement's own:

* model-only: the compiled forward pass on one preprocessed batch held in memory (the ceiling);
* end-to-end: the project's pipeline from a synthetic train.h5 to the written feature file;
* classic: every image loaded into one numpy array, resized, then ``model.predict(x, batch_size=32)``;

for a dataset of N and of 2N images (peak memory should stay flat end-to-end), and
FLOPs per image with the achieved GFLOP/s against a float32 matmul measured in the same run.

    python benchmarks/bench_features.py [--images 512] [--backbones mobilenet_v2 resnet50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH_SIZE = 32


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_extractor(backbone: str, precision: str):
    from features.extract import FeatureExtractor

    return FeatureExtractor(backbone, weights=None, batch_size=BATCH_SIZE, precision=precision)


def measure_model_only(backbone: str, precision: str, repeats: int = 6) -> dict:
    """Images/s of the compiled network alone on one preprocessed batch in memory (the ceiling)."""
    import numpy as np
    import tensorflow as tf

    extractor = build_extractor(backbone, precision)
    size = extractor.config.input_size
    batch = tf.constant(np.random.default_rng(0).uniform(-1, 1, (BATCH_SIZE, size, size, 3)).astype(np.float32))
    network = tf.function(lambda x: extractor.model(x, training=False))
    network(batch).numpy()  # trace and warm up
    start = time.perf_counter()
    for _ in range(repeats):
        network(batch).numpy()
    seconds = time.perf_counter() - start
    return {"images_per_s": repeats * BATCH_SIZE / seconds, "flops_per_image": flops_per_image(extractor)}


def measure_end_to_end(backbone: str, precision: str, source: Path) -> dict:
    """Images/s of the streaming pipeline from ``source`` to a written feature file (after one warm-up batch)."""
    import h5py

    extractor = build_extractor(backbone, precision)
    with h5py.File(source, "r") as handle:
        n = len(handle["images"])
        extractor.forward(handle["images"][:BATCH_SIZE]).numpy()  # trace, as model-only does
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        extractor.write(source, Path(folder) / "train.h5", "bench", progress=False)
        seconds = time.perf_counter() - start
    return {"images_per_s": n / seconds}


def measure_classic(backbone: str, precision: str, source: Path) -> dict:
    """Images/s of the classic recipe: all images in one array, resized and preprocessed, then predict."""
    import h5py
    import numpy as np
    import tensorflow as tf

    extractor = build_extractor(backbone, precision)
    size = extractor.config.input_size
    start = time.perf_counter()
    with h5py.File(source, "r") as handle:
        images = handle["images"][:]
    x = extractor.config.preprocess_input(tf.image.resize(images.astype(np.float32), (size, size)).numpy())
    features = extractor.model.predict(x, batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - start
    assert len(features) == len(images)
    return {"images_per_s": len(images) / seconds}


def measure_matmul(n: int = 2048, repeats: int = 10) -> dict:
    """GFLOP/s of a float32 n x n matrix product: the machine's compute ceiling."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        matmul().numpy()
    return {"gflops": 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9}


def flops_per_image(extractor) -> float:
    """Floating-point operations of one forward pass (TensorFlow's profiler on the frozen graph)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    size = extractor.config.input_size
    concrete = tf.function(lambda x: extractor.model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, size, size, 3), tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


MEASUREMENTS = {
    "model-only": lambda args: measure_model_only(args.backbone, args.precision),
    "end-to-end": lambda args: measure_end_to_end(args.backbone, args.precision, Path(args.source)),
    "classic": lambda args: measure_classic(args.backbone, args.precision, Path(args.source)),
    "matmul": lambda args: measure_matmul(),
}


def run_child(kind: str, backbone: str = "", precision: str = "float32", source: Path | None = None) -> dict:
    """Run one measurement in a fresh process; returns its figures and peak RSS."""
    command = [sys.executable, __file__, "--child", kind, "--backbone", backbone, "--precision", precision]
    if source is not None:
        command += ["--source", str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {backbone} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_synthetic_images(folder: Path, n: int) -> Path:
    """A train.h5 of ``n`` random 256x256 images in the pipeline's format, written in blocks."""
    import h5py
    import numpy as np

    from competition.h5store import write_strings

    path = folder / f"train-{n}.h5"
    rng = np.random.default_rng(n)
    with h5py.File(path, "w") as handle:
        images = handle.create_dataset("images", shape=(n, 256, 256, 3), dtype=np.uint8)
        for begin in range(0, n, 256):
            images[begin:begin + 256] = rng.integers(0, 256, (min(256, n - begin), 256, 256, 3), dtype=np.uint8)
        handle.create_dataset("labels", data=np.arange(n) % 2)
        write_strings(handle, "label_names", ["cat", "dog"])
        write_strings(handle, "ids", [f"{i}.jpg" for i in range(n)])
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="smaller dataset size; the larger is twice this")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--precision", default="float32", help="compute precision for every measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = MEASUREMENTS[args.child](args)
        print(json.dumps(dict(figures, peak_rss_mib=peak_rss_mib())))
        return 0

    sizes = (args.images, 2 * args.images)
    with tempfile.TemporaryDirectory() as folder:
        sources = {n: write_synthetic_images(Path(folder), n) for n in sizes}
        matmul = run_child("matmul")
        print(f"float32 matmul 2048x2048: {matmul['gflops']:.0f} GFLOP/s; precision {args.precision}; "
              f"batch {BATCH_SIZE}; {os.cpu_count()} CPUs")
        for backbone in args.backbones:
            ceiling = run_child("model-only", backbone, args.precision)
            runs = {(kind, n): run_child(kind, backbone, args.precision, sources[n])
                    for kind in ("end-to-end", "classic") for n in sizes}
            report(backbone, ceiling, runs, sizes, matmul["gflops"])
    return 0


def report(backbone: str, ceiling: dict, runs: dict, sizes: tuple[int, int], matmul_gflops: float) -> None:
    small, large = sizes
    end_to_end = runs[("end-to-end", large)]["images_per_s"]
    classic = runs[("classic", large)]["images_per_s"]
    achieved = ceiling["flops_per_image"] * end_to_end / 1e9
    print(f"\n{backbone}: {ceiling['flops_per_image'] / 1e9:.2f} GFLOP/image")
    print(f"  model-only  {ceiling['images_per_s']:7.1f} img/s   peak {ceiling['peak_rss_mib']:6.0f} MiB")
    for kind in ("end-to-end", "classic"):
        for n in sizes:
            run = runs[(kind, n)]
            print(f"  {kind:<11} {run['images_per_s']:7.1f} img/s   peak {run['peak_rss_mib']:6.0f} MiB   ({n} images)")
    print(f"  end-to-end / model-only: {end_to_end / ceiling['images_per_s']:.2f}x (target >= 0.9)")
    print(f"  end-to-end / classic:    {end_to_end / classic:.2f}x (target >= 2)")
    for kind in ("end-to-end", "classic"):
        growth = runs[(kind, large)]["peak_rss_mib"] - runs[(kind, small)]["peak_rss_mib"]
        print(f"  {kind} peak memory {small} -> {large} images: {growth:+.0f} MiB")
    print(f"  achieved {achieved:.0f} GFLOP/s end-to-end = {achieved / matmul_gflops:.0%} of matmul")


if __name__ == "__main__":
    sys.exit(main())
