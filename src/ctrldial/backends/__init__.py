"""Where a sweep's points run: ``ctrldial sweep --backend local|ray|slurm``.

``local`` is ``ctrldial.sweep`` itself (one point after another, here). ``ray`` (``raycluster``) makes each
pending point a Ray task; ``slurm`` (``slurm``) submits them as a job array with submitit. Planning,
skip/resume by record status and config hash, the shared judge and ``sweep.json`` are the same for all
three; only the execution of the pending points differs. Ray and submitit are imported only when used.
"""

from __future__ import annotations

from ctrldial.errors import UserError
from ctrldial.sweep import Dispatcher

BACKENDS = ("local", "ray", "slurm")


def make_dispatcher(backend: str, ray_address: str | None = None, max_retries: int | None = None,
                    slurm: list[str] | None = None) -> Dispatcher | None:
    """The dispatcher for ``--backend`` (None: local); options of another backend are an error, not ignored."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    stray = [f"{flag} applies only with --backend {own}" for flag, value, own in
             (("--ray-address", ray_address, "ray"), ("--max-retries", max_retries, "ray"), ("--slurm", slurm, "slurm"))
             if value not in (None, []) and own != backend]
    if stray:
        raise UserError(f"--backend {backend}: " + "; ".join(stray))
    if backend == "ray":
        from ctrldial.backends.raycluster import RayDispatcher

        return RayDispatcher(ray_address, max_retries)
    if backend == "slurm":
        from ctrldial.backends.slurm import SlurmDispatcher

        return SlurmDispatcher(slurm)
    return None
