"""Dataset readers (one file per format). See ``_registry`` for the contract."""

from popdistill.data.readers._registry import (
    Reader,
    VideoRef,
    create_reader,
    list_readers,
    register_reader,
)

__all__ = ["Reader", "VideoRef", "create_reader", "list_readers", "register_reader"]

# Built-in formats register themselves on import. Each module below adds one format.
from popdistill.data.readers import (  # noqa: E402,F401
    davis,
    object_discovery,
    video_folder,
    youtube_objects,
)
