"""Hand a tenant's data back in open formats, prove the hand-over, destroy every copy and
certify it."""

import os

# Arrow chooses its allocator once, when pyarrow is first imported. jemalloc hands the Parquet
# encoder's page buffers back to the system sooner than the default mimalloc: peak RSS of the
# wide benchmark export 265 MB against 295 MB, same speed (benchmarks/README.md). An operator's
# own setting wins; a build without jemalloc falls back to the default with a warning.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
