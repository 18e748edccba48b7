"""Resource limits applied to the replica process before the model is loaded.

Only memory is enforced, through RLIMIT_DATA (soft and hard), so a model that allocates past its
limit gets MemoryError (or is killed by the kernel). CPU is *not* enforced here: a CPU share is a
scheduling property that the launcher (cgroups, a container runtime) must set if it wants one.
"""

import resource


def limit_memory(max_bytes: int) -> None:
    """Cap the data segment (heap and private anonymous mappings) of this process at max_bytes."""
    resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))
