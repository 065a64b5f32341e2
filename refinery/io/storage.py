"""The output location of a run, local or object storage (s3://...), through pyarrow's
filesystems, so the same code writes shards and stats on a laptop and on a cluster."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class Output:
    """A folder that workers and the driver write into. Files are written whole under their
    final name only when complete (a temporary name, then a move, locally; S3 puts are atomic)."""

    def __init__(self, uri: str):
        if "://" not in uri:
            uri = os.path.abspath(uri)
        self.uri = uri
        self.fs, self.root = pafs.FileSystem.from_uri(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def is_empty(self) -> bool:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return True
        return not self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))

    def clear(self) -> None:
        if self.fs.get_file_info(self.root).type != pafs.FileType.NotFound:
            self.fs.delete_dir_contents(self.root, missing_dir_ok=True)

    def _write(self, rel: str, write) -> None:
        final = self.path(rel)
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        target = f"{final}.tmp-{os.getpid()}" if self.local else final
        write(target)
        if self.local:
            self.fs.move(target, final)

    def write_json(self, rel: str, obj) -> None:
        data = json.dumps(obj, indent=1).encode()

        def write(target):
            with self.fs.open_output_stream(target) as f:
                f.write(data)

        self._write(rel, write)

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        self._write(rel, lambda target: pq.write_table(table, target, filesystem=self.fs, compression="zstd"))

    def read_json(self, rel: str):
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read())

    def list_files(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of the files under `rel` ending in `suffix`, sorted."""
        base = self.path(rel)
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        root = self.root.rstrip("/") + "/"
        return sorted(i.path.removeprefix(root) for i in infos if i.is_file and i.path.endswith(suffix))
