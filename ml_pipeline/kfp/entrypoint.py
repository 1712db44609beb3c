"""The pipeline images' entrypoint: print the GPUs TensorFlow sees, refuse a GPU run that sees none, then run.

``python -m ml_pipeline.kfp.entrypoint [--gpus N] -- COMMAND...``

The spec's "GPUs allocated but not used" bug was a job that got GPUs its code never saw, and trained for
hours on the CPU without a word. So every container of a GPU run starts here: it prints what TensorFlow
sees (the first lines of the job's log), and when ``N`` GPUs (``--gpus``, default the ``REQUIRE_GPUS``
variable the GPU image sets) are asked for and none is visible, it exits with code 3 and says so before
the command ever starts. Otherwise it replaces itself with ``COMMAND``.
"""

from __future__ import annotations

import argparse
import os
import sys

NO_GPU_EXIT = 3


def visible_gpus() -> list[str]:
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def main(argv: list[str] | None = None, exec_command=os.execvp) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_pipeline.kfp.entrypoint", description=__doc__)
    parser.add_argument("--gpus", type=int, default=int(os.environ.get("REQUIRE_GPUS") or 0))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    gpus = visible_gpus()
    print(f"GPUs visible to TensorFlow: {len(gpus)}" + "".join(f"\n  {name}" for name in gpus), flush=True)
    if args.gpus > 0 and not gpus:
        print(
            f"refusing to start: this run asks for {args.gpus} GPU(s) and TensorFlow sees none "
            "(no GPU attached, or the CUDA libraries do not match); it would train on the CPU",
            file=sys.stderr,
            flush=True,
        )
        return NO_GPU_EXIT
    if len(gpus) < args.gpus:
        print(f"note: {args.gpus} GPU(s) asked for, {len(gpus)} visible", flush=True)
    if not command:
        return 0
    exec_command(command[0], command)
    return 0  # only reached when exec_command returns (tests)


if __name__ == "__main__":
    sys.exit(main())
