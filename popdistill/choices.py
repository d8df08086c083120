"""Names of options that configs must know without importing torch (validation, ``--help``)."""

__all__ = ["PRECISIONS", "GPU_MODES"]

# popdistill.students.device: fp32, bf16 autocast, or auto (bf16 on CUDA, fp32 elsewhere)
PRECISIONS = ["auto", "fp32", "bf16"]
# resources.gpu: use GPUs when the cluster has them, always, or never
GPU_MODES = ["auto", "yes", "no"]
