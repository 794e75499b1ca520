"""The Predict page's uploads: zips read by the project's one reader, at most MAX_IMAGES read, the rest counted."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from core.data.sources import ZipSource
from ui import predict_views


class _Upload(io.BytesIO):
    def __init__(self, name: str, data: bytes):
        super().__init__(data)
        self.name = name

    def getvalue(self) -> bytes:  # noqa: D102 - like Streamlit's UploadedFile
        return super().getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def _zip(name: str, count: int, junk: bool = True) -> _Upload:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"photos/{index:02d}.png", _png())
        if junk:
            archive.writestr("__MACOSX/photos/._00.png", b"junk")
            archive.writestr("photos/Thumbs.db", b"junk")
            archive.writestr("photos/notes.txt", b"text")
    return _Upload(name, buffer.getvalue())


def test_images_over_the_limit_are_counted_not_read(workspace, monkeypatch):
    monkeypatch.setattr(predict_views, "MAX_IMAGES", 4)
    reads = []
    real_read = ZipSource.read
    monkeypatch.setattr(ZipSource, "read", lambda self, name: reads.append(name) or real_read(self, name))
    uploads = [_zip("first.zip", 3), _zip("second.zip", 8, junk=False), _Upload("single.png", _png())]
    images, skipped = predict_views.collect_images(workspace, uploads, None)
    assert [name for name, _ in images] == ["first.zip/photos/00.png", "first.zip/photos/01.png",
                                            "first.zip/photos/02.png", "second.zip/photos/00.png"]
    assert len(reads) == 4  # nothing beyond the limit was decompressed
    assert skipped[-1][0] == "8 more images"  # 7 of second.zip and single.png


def test_junk_is_skipped_by_the_ingestion_rule_with_its_reason(workspace):
    images, skipped = predict_views.collect_images(workspace, [_zip("pics.zip", 2)], None)
    assert len(images) == 2
    reasons = dict(skipped)
    assert reasons["pics.zip/__MACOSX/photos/._00.png"].startswith("macOS metadata")
    assert reasons["pics.zip/photos/Thumbs.db"] == "system file"
    assert "not an image file" in reasons["pics.zip/photos/notes.txt"]
