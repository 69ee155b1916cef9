"""Metadata keys shared by the transformation decorator and the IO manager."""

FORMAT_METADATA_KEY = "ktx/format"  # asset metadata: the format an asset declares it stores
LOAD_METADATA_KEY = "ktx/load"  # input metadata: "many" (dict) or "lazy" (LazyPartitions)
