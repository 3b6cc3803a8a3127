"""How fast `tcv data synth` makes frames. Target (issue: data): at least 1,000 frames a minute on
2 cores. Prints frames per minute, and last the ratio to the target (>= 1 meets it).

    python benchmarks/bench_synth.py [--images 1000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from tcv_helpers.data.synth import generate_dataset

TARGET_FRAMES_PER_MINUTE = 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = generate_dataset(
            tmp, images=args.images, cameras=8, sequences=0, workers=args.workers
        )
        seconds = time.perf_counter() - start
    per_minute = args.images / seconds * 60
    boxes = sum(result.boxes.values())
    print(f"frames={args.images} boxes={boxes} workers={args.workers} seconds={seconds:.1f}")
    print(f"frames_per_minute={per_minute:.0f} target={TARGET_FRAMES_PER_MINUTE:.0f}")
    print(f"ratio_to_target={per_minute / TARGET_FRAMES_PER_MINUTE:.2f}")


if __name__ == "__main__":
    main()
