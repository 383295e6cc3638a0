"""A zoo plugin whose weights live outside the Hub: a timm folder packed in a tar archive at a URL, with its checksum.

A registry source ``archive:URL#sha256=HEX`` names the scheme this family claims (``source_schemes``); zoo fetch and
the offline guard call ``fetch_source``, which downloads the archive, checks its checksum and unpacks it into a
cache folder named by that checksum; loading reads the folder through the timm family.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from zoo_timm.family import TimmFamily

from zoo.errors import ModelLoadError
from zoo.family import FetchedSource
from zoo.plugins import hookimpl

SCHEME = "archive"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo-archive"


def _parse(source: str) -> tuple[str, str]:
    """(url, sha256) of ``archive:URL#sha256=HEX``."""
    url, _, checksum = source.removeprefix(f"{SCHEME}:").partition("#sha256=")
    if not url or len(checksum) != 64:
        raise ModelLoadError(f"{source}: an archive source is 'archive:URL#sha256=HEX' (64 hex digits)")
    return url, checksum.lower()


class ArchivedTimmFamily(TimmFamily):
    """timm backbones unpacked from checksummed tar archives."""

    name = "timm-archive"
    source_schemes = (SCHEME,)

    def fetch_source(self, spec, *, local_only: bool = False) -> FetchedSource | None:
        url, checksum = _parse(spec.source)
        folder = _cache_root() / checksum
        if folder.is_dir():
            return FetchedSource(folder, commit=checksum)
        if local_only:
            return None
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:   # beside the cache: the rename stays atomic
            archive = Path(tmp) / "archive.tar"
            try:
                with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as exc:
                raise ModelLoadError(f"could not download {url} for {spec.name!r}: {exc}") from exc
            found = hashlib.sha256(archive.read_bytes()).hexdigest()
            if found != checksum:
                raise ModelLoadError(f"{url}: sha256 is {found}, the registry entry of {spec.name!r} says "
                                     f"{checksum}; fix the entry or the file")
            unpacked = Path(tmp) / "unpacked"
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
            unpacked.rename(folder)   # whole or not at all: a cache folder is never half-written
        return FetchedSource(folder, commit=checksum)

    def load_classifier(self, spec, *, task, labels, multi_label=False, pretrained=True, trust_remote_code=False,
                        image_size=None):
        from huggingface_hub import constants

        if pretrained:
            fetched = self.fetch_source(spec, local_only=bool(constants.HF_HUB_OFFLINE))
            if fetched is None:
                raise ModelLoadError(f"{spec.name!r} is not fetched and HF_HUB_OFFLINE=1 is set: run 'zoo fetch "
                                     f"{spec.name}' while online")
            spec = dataclasses.replace(spec, source=f"local-dir:{fetched.path}")
        return super().load_classifier(spec, task=task, labels=labels, multi_label=multi_label,
                                       pretrained=pretrained, trust_remote_code=trust_remote_code,
                                       image_size=image_size)


@hookimpl
def zoo_families():
    return [ArchivedTimmFamily]
