"""Writers of the open formats the client receives: Parquet tables and the signed ZIP bundle."""

import offboarding  # noqa: F401  (chooses Arrow's allocator before pyarrow is imported)
