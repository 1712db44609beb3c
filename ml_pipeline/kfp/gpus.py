"""GPUs for the Trainer on Vertex AI and Kubeflow: the spec's tables as data, and the shapes a run asks for.

* :data:`ACCELERATORS`: our short names (``T4``) and Vertex AI's accelerator enum names
  (``NVIDIA_TESLA_T4``), with the GKE node label Kubeflow schedules on;
* :data:`MACHINE_TYPES`: the machine type that carries N GPUs of a type (T4 on n1-standard-8/16/32, L4 on
  g2-standard-8/24/48/96, A100 on a2-highgpu-1g..8g, ...); a count the table lacks is refused;
* :data:`TRAINING_REGIONS`: which GPU types Vertex AI *custom training* offers in which region (the spec's
  "GPU Regional Availability Matrix": Compute Engine may list GPUs where training has none, as in
  europe-central2);
* :func:`shapes`: the shapes to try in order, the run's own first and then the fallback order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_pipeline.errors import ConfigError, Problem


@dataclass(frozen=True)
class Accelerator:
    vertex_type: str  # aiplatform's AcceleratorType name
    gke_label: str  # the value of cloud.google.com/gke-accelerator on a node with this GPU


ACCELERATORS: dict[str, Accelerator] = {
    "T4": Accelerator("NVIDIA_TESLA_T4", "nvidia-tesla-t4"),
    "L4": Accelerator("NVIDIA_L4", "nvidia-l4"),
    "V100": Accelerator("NVIDIA_TESLA_V100", "nvidia-tesla-v100"),
    "A100": Accelerator("NVIDIA_TESLA_A100", "nvidia-tesla-a100"),
    "H100": Accelerator("NVIDIA_H100_80GB", "nvidia-h100-80gb"),
}

# GPU type -> GPU count -> machine type (the spec's "Machine Type + GPU Combinations"; V100 and H100 from
# Vertex AI's compute configuration page).
MACHINE_TYPES: dict[str, dict[int, str]] = {
    "T4": {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"},
    "V100": {
        1: "n1-standard-8",
        2: "n1-standard-16",
        4: "n1-standard-16",
        8: "n1-standard-32",
    },  # 4: the spec's fallback table
    "L4": {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"},
    "A100": {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g"},
    "H100": {8: "a3-highgpu-8g"},
}

# Region -> the GPU types Vertex AI custom training offers there (the spec's availability matrix).
TRAINING_REGIONS: dict[str, frozenset[str]] = {
    "us-central1": frozenset({"T4", "L4", "V100", "A100", "H100"}),
    "us-west1": frozenset({"T4", "L4", "V100", "A100", "H100"}),
    "us-east4": frozenset({"T4", "L4", "V100", "A100"}),
    "europe-west4": frozenset({"T4", "L4", "V100", "A100"}),
    "europe-west1": frozenset({"T4", "L4", "V100", "A100"}),
    "europe-central2": frozenset(),  # GPUs for prediction only, none for training
    "asia-east1": frozenset({"T4", "L4", "V100", "A100"}),
}

# When a shape is unavailable (quota, stock-out), the next is tried: the spec's Airflow-era order.
DEFAULT_FALLBACK = "4xT4,4xV100,4xL4,2xT4"


@dataclass(frozen=True)
class GpuShape:
    """One worker pool shape: N GPUs of a type on the machine type that carries them."""

    gpu_type: str
    gpu_count: int

    @property
    def machine_type(self) -> str:
        return MACHINE_TYPES[self.gpu_type][self.gpu_count]

    @property
    def accelerator(self) -> Accelerator:
        return ACCELERATORS[self.gpu_type]

    @property
    def label(self) -> str:
        return f"{self.gpu_count}x{self.gpu_type}"

    def as_dict(self) -> dict:
        return {
            "gpu_type": self.gpu_type,
            "gpu_count": self.gpu_count,
            "machine_type": self.machine_type,
            "accelerator_type": self.accelerator.vertex_type,
        }


def shape(gpu_type: str, gpu_count: int, field: str = "gpu_config") -> GpuShape:
    """The shape, or ConfigError naming ``field`` when the type is unknown or carries no such count."""
    if gpu_type not in MACHINE_TYPES:
        raise ConfigError(
            Problem(f"{field}.gpu_type", f"unknown GPU type '{gpu_type}'; one of {', '.join(MACHINE_TYPES)}")
        )
    counts = MACHINE_TYPES[gpu_type]
    if gpu_count not in counts:
        raise ConfigError(
            Problem(
                f"{field}.gpu_count",
                f"{gpu_type} GPUs come {', '.join(map(str, counts))} to a machine, not {gpu_count}",
            )
        )
    return GpuShape(gpu_type, gpu_count)


def parse_order(text: str, field: str = "GPU_FALLBACK_ORDER") -> list[GpuShape]:
    """``"4xT4,4xV100"`` as shapes; ConfigError naming ``field`` for an entry that is not one."""
    shapes_ = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        count, _, gpu_type = entry.partition("x")
        if not count.isdigit() or not gpu_type:
            raise ConfigError(Problem(field, f"'{entry}' is not <count>x<GPU type> (e.g. 4xT4)"))
        shapes_.append(shape(gpu_type, int(count), field))
    return shapes_


def regions_with(gpu_type: str) -> list[str]:
    return sorted(region for region, types in TRAINING_REGIONS.items() if gpu_type in types)


def check_region(gpu_type: str, region: str, field: str = "gpu_config.gpu_type") -> None:
    """Refuse a GPU type Vertex AI training does not offer in ``region``, naming the regions that have it."""
    if gpu_type in TRAINING_REGIONS.get(region, frozenset()):
        return
    where = "Vertex AI training offers no GPUs there" if region in TRAINING_REGIONS else "a region not in the table"
    raise ConfigError(
        Problem(
            field,
            f"{gpu_type} GPUs are not available for training in {region} ({where}); "
            f"regions with {gpu_type}: {', '.join(regions_with(gpu_type)) or 'none'}",
        )
    )


def shapes(gpu_type: str | None, gpu_count: int, fallback: list[GpuShape], region: str) -> list[GpuShape]:
    """The shapes to try in order: the run's own, then each fallback the region offers (no repeats).

    The run's own shape must exist and be offered in ``region`` (ConfigError naming the field otherwise);
    fallbacks the region lacks are left out rather than refused.
    """
    if gpu_count == 0:
        return []
    wanted = shape(gpu_type or "T4", gpu_count)
    check_region(wanted.gpu_type, region)
    order = [wanted]
    for candidate in fallback:
        if candidate not in order and candidate.gpu_type in TRAINING_REGIONS.get(region, frozenset()):
            order.append(candidate)
    return order
