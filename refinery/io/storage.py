"""The output location of a run, local or object storage (s3://...), through pyarrow's
filesystems, so the same code writes shards and stats on a laptop and on a cluster.

S3-compatible stores (MinIO, Ceph, R2, ...): set `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`, or
`REFINERY_S3_ENDPOINT`, which wins) to e.g. `http://minio:9000`; credentials come from the usual AWS
chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, ~/.aws, an instance role). A URI may also carry
pyarrow's own options, e.g. `s3://bucket/out?endpoint_override=minio:9000&scheme=http`.

Requests on object storage cost time and money at a crawl's millions of files, so a file is one
request where that is safe: no directory markers (S3 has no folders), a single PUT for a file
smaller than a multipart chunk (`allow_delayed_open`), and many files are deleted, moved or read
by a bounded pool of threads rather than one after the other."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
import re
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


# threads of one process that move, delete or read many files at once (each file: a request or two)
IO_THREADS = 32
S3_ENDPOINT_VARS = ("REFINERY_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment, if any (the first set of S3_ENDPOINT_VARS)."""
    return next((os.environ[v] for v in S3_ENDPOINT_VARS if os.environ.get(v)), None)


# pyarrow's options in a URI, `?key=value&...`; a `?` followed by anything else is part of the path (a glob)
_QUERY = re.compile(r"\?((?:[a-z_]+=[^&/?]*&?)+)$")


def split_query(uri: str) -> tuple[str, str]:
    """`s3://b/k?scheme=http` -> (`s3://b/k`, `scheme=http`); ('', when there are no options)."""
    m = _QUERY.search(uri)
    return (uri[: m.start()], m.group(1)) if m else (uri, "")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a local path or URI, and the path inside it. An `s3://` URI
    with an endpoint override in the environment gets an S3FileSystem on that endpoint built
    here, because pyarrow's from_uri would first ask AWS for the bucket's region."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    base, query = split_query(uri)
    scheme, rest = base.split("://", 1)
    endpoint = s3_endpoint()
    if scheme.lower() == "s3" and endpoint and not query:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        fs = pafs.S3FileSystem(endpoint_override=parts.netloc, scheme=parts.scheme, region=region, connect_timeout=10,
                               allow_delayed_open=True)
        return fs, rest.rstrip("/")
    if scheme.lower() == "s3" and "allow_delayed_open" not in query:  # a small file is one PUT, not a multipart upload
        uri = f"{base}?{query}{'&' if query else ''}allow_delayed_open=true"
    return pafs.FileSystem.from_uri(uri)


class Output:
    """A folder that workers and the driver write into. Files are written whole under their
    final name only when complete (a temporary name, then a move, locally; S3 puts are atomic)."""

    def __init__(self, uri: str):
        if "://" not in uri:
            uri = os.path.abspath(uri)
        self.uri = uri
        self.fs, self.root = filesystem(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p for p in parts if p)])

    def is_empty(self) -> bool:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return True
        return not self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))

    def clear(self) -> None:
        if self.fs.get_file_info(self.root).type != pafs.FileType.NotFound:
            self.fs.delete_dir_contents(self.root, missing_dir_ok=True)

    def _make_parent(self, path: str) -> None:
        """Locally, the folder a file goes in; on object storage nothing (a marker per level would
        cost a request each, and S3 needs none)."""
        if self.local:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

    def _write(self, rel: str, write) -> None:
        final = self.path(rel)
        self._make_parent(final)
        target = f"{final}.tmp-{os.getpid()}" if self.local else final
        write(target)
        if self.local:
            self.fs.move(target, final)

    def write_json(self, rel: str, obj) -> None:
        self.write_text(rel, json.dumps(obj, indent=1))

    def write_text(self, rel: str, text: str) -> None:
        data = text.encode()

        def write(target):
            with self.fs.open_output_stream(target) as f:
                f.write(data)

        self._write(rel, write)

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        self._write(rel, lambda target: pq.write_table(table, target, filesystem=self.fs, compression="zstd"))

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """One open (on S3 a HEAD, then ranged GETs), without the extra look-ups of pyarrow's dataset discovery."""
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.read_table(f, columns=columns)

    def read_json(self, rel: str):
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read())

    def read_jsons(self, rels: list[str]) -> list:
        """Many small JSON files, fetched in parallel: on object storage each is a request."""
        return self.each(self.read_json, rels)

    def iter_jsons(self, rels: list[str]):
        """read_jsons, a few pools' worth at a time: for summing files too many to hold at once."""
        for i in range(0, len(rels), 4 * IO_THREADS):
            yield from self.read_jsons(rels[i : i + 4 * IO_THREADS])

    @staticmethod
    def each(fn, items: list) -> list:
        """fn of every item, on IO_THREADS threads (storage calls wait on the network, not the CPU), in order."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(items))) as pool:
            return list(pool.map(fn, items))

    def read_json_if_exists(self, rel: str):
        try:
            return self.read_json(rel)
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def delete(self, rel: str) -> None:
        """Remove a file or a folder; nothing there is fine. A local folder's files go in
        parallel; on S3 a folder is listed and deleted 1,000 keys a request."""
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.delete_folder(rel)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self.path(rel))

    def delete_folder(self, rel: str) -> None:
        """Remove a folder known to be there (no look-up first)."""
        if self.local:
            self.delete_files(self.list_files(rel))
        self.fs.delete_dir(self.path(rel))

    def delete_files(self, rels: list[str]) -> None:
        """Remove these files (found by a listing), in parallel; one already gone is fine."""

        def delete(rel: str) -> None:
            try:
                self.fs.delete_file(self.path(rel))
            except FileNotFoundError:
                pass

        self.each(delete, rels)

    def move(self, src: str, dst: str) -> None:
        """A whole file to a new name (a rename locally; a server-side copy then a delete on S3,
        so the new name never shows a partial file)."""
        self._make_parent(self.path(dst))
        self.fs.move(self.path(src), self.path(dst))

    def move_files(self, pairs: list[tuple[str, str]]) -> None:
        """Many moves (src, dst), in parallel."""
        self.each(lambda pair: self.move(*pair), pairs)

    def list_files(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of the files under `rel` ending in `suffix`, sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True))
        root = self.root.rstrip("/") + "/"
        return sorted(i.path.removeprefix(root) for i in infos if i.is_file and i.path.endswith(suffix))
