"""Where a pipeline keeps its stage outputs, checkpoints and run records.

    storage = Storage.resolve(spec_storage, settings, on_cluster=False)
    storage.probe()                              # before any stage: reachable and writable?
    storage.put_folder(local, storage.join("demo", run, "curate"))

The storage is a URI that pyarrow's filesystems open (``s3://bucket/prefix``,
``gs://…``, ``hdfs://…``: the same ones Ray Train writes checkpoints to) or a folder: a
shared ReadWriteMany mount on a cluster, any folder on the local platform. Ray Train
writes checkpoints there itself; the driver copies the other stages' folders there
after they finish and fetches a stage's inputs from there before it starts, so every
stage reads local files wherever it runs. S3-compatible stores (MinIO) take the
endpoint from ``AWS_ENDPOINT_URL``, as pyarrow and boto do.
"""

from __future__ import annotations

import os
from pathlib import Path

from lathe.errors import ConfigError

FETCHED = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "http://", "https://")


def is_uri(value: str) -> bool:
    return isinstance(value, str) and value.startswith(FETCHED)


class Storage:
    def __init__(self, root: str) -> None:
        self.remote = is_uri(root)
        self.root = root.rstrip("/") if self.remote else str(Path(root).expanduser().resolve())

    @classmethod
    def resolve(cls, configured: str | None, env_storage: str | None, home: Path, *, on_cluster: bool) -> Storage:
        """The file's ``storage``, else ``LATHE_PIPELINE_STORAGE``, else (locally) ``LATHE_HOME/pipelines``."""
        root = configured or env_storage
        if on_cluster:
            if not root:
                raise ConfigError(
                    "storage: this cluster has no shared storage for pipelines; set ray.pipelines.storage or "
                    "ray.sharedStorageClaim in the chart, or storage: in the pipeline file"
                )
            if not is_uri(root) and not Path(root).is_absolute():
                raise ConfigError(f"storage: {root} is a relative folder; on a cluster use a URI or a shared mount")
        return cls(root or str(home / "pipelines"))

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _fs(self, uri: str):
        import pyarrow.fs as pafs

        if not is_uri(uri):
            return pafs.LocalFileSystem(), uri
        try:
            return pafs.FileSystem.from_uri(uri)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for schemes it lacks
            raise ConfigError(f"storage: {uri} cannot be opened ({str(exc).splitlines()[0]})") from None

    def probe(self) -> None:
        """Write and delete a small file: the storage is reachable and writable from here."""
        probe = self.join(f".lathe-probe-{os.urandom(4).hex()}")
        try:
            self.write_text(probe, "ok")
            fs, path = self._fs(probe)
            fs.delete_file(path)
        except ConfigError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"storage: {self.root} is not reachable from here ({first})") from None

    def write_text(self, uri: str, text: str) -> None:
        fs, path = self._fs(uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as sink:
            sink.write(text.encode())

    def read_text(self, uri: str) -> str | None:
        import pyarrow.fs as pafs

        fs, path = self._fs(uri)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as source:
            return source.read().decode()

    def children(self, uri: str) -> list[str]:
        """Names directly under ``uri`` (none when it does not exist)."""
        import pyarrow.fs as pafs

        fs, path = self._fs(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(info.base_name for info in infos)

    def put_folder(self, local: Path, uri: str) -> None:
        """Copy a finished stage's folder to ``uri`` (nothing to do when it is already there)."""
        import pyarrow.fs as pafs

        if not self.remote:
            return
        fs, path = self._fs(uri)
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    def fetch(self, uri: str, local: Path) -> Path:
        """A stage input at ``uri`` as a local file or folder under ``local`` (fetched once)."""
        import pyarrow.fs as pafs

        if local.exists():
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        if uri.startswith(("http://", "https://")):
            return _download(uri, local)
        fs, path = self._fs(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"input {uri} does not exist")
        if info.type == pafs.FileType.Directory:
            local.mkdir(parents=True)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return local


def _download(url: str, local: Path) -> Path:
    import httpx

    partial = local.with_name(local.name + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with partial.open("wb") as sink:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
    except httpx.HTTPError as exc:
        raise ConfigError(f"input {url} cannot be fetched ({type(exc).__name__}: {exc})") from None
    partial.rename(local)
    return local
