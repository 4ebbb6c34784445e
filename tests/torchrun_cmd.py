"""The ``torchrun --nproc_per_node=2`` command the multi-process tests launch, on a free local port."""
from __future__ import annotations

import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_two(*argv: str) -> list[str]:
    """``python -m torch.distributed.run`` with two local processes, then ``argv`` (a script or ``-m mod``)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", *argv]
