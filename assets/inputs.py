"""Where Hello World's inputs are: one partition per file `<data>/hello_world/raw/part_*.txt`
(shared by the transformation and its checks)."""

from ktx_dagster import FilePartitions

HELLO_WORLD_FILES = FilePartitions(
    name="hello_world_files", directory="hello_world/raw", pattern="part_*.txt"
)
