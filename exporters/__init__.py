"""Writers of the open formats the client receives: Parquet tables and the signed ZIP bundle."""
