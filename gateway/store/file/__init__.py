"""The file store: :class:`ObjectStore` in a local directory.

The embedded default, and the reference the S3 store is tested against, so it
keeps S3's rules where code written against it could otherwise pass here and
fail on S3 (parts of at least 5 MiB except the last, part ETags checked on
completion, ``if_absent`` atomic).

Layout under ``root``::

    objects/<key>                 one file per object: its bytes, or a manifest
    parts/<id>/00001              the parts of a completed multipart object
    multipart/<upload_id>/meta.json   {"key": ..., "initiated": ...}
    multipart/<upload_id>/00001   one file per part
    tmp/                          files being written; renamed into place

Every write lands in ``tmp/`` first, is fsynced, and is renamed into place, so
readers and listings never see a half-written file and a crash leaves only
junk in ``tmp/``. Data goes through aiofiles; directory work runs in worker
threads. An ETag is derived from the file's inode, size and mtime: opaque,
and different for every write.

Completing a multipart upload copies nothing: the part files are hard-linked
into ``parts/<id>/`` and the object's path gets a small manifest naming them
(:mod:`gateway.store.manifest`), whose ETag is ``<id>-<parts>``. A one-part
upload becomes an ordinary file the same way. Links, not renames, so the upload
stays whole until the manifest is in place: a crash before leaves an orphan
``parts/<id>/`` (see :meth:`FileStore.housekeep`), never a broken upload.
Replacing or deleting a manifest object swaps the manifest out first and then
removes its parts, so a crash between leaves an orphan, never a dangling name.
Composing objects (tus concatenation) works the same way: the sources' files
(a plain object's file, a manifest's parts) are linked into a new parts dir
behind a new manifest, so joining a 1 GiB upload's partials copies no byte.

The store is one class built up by concern, each module adding to the
last: :mod:`.layout` (the directories, and installing finished files in
them), :mod:`.objects` (whole objects and ranged reads), :mod:`.multipart`,
:mod:`.compose` and :mod:`.store` (:class:`FileStore` itself, with its
upkeep). :mod:`.disk` holds the plain functions on files they share.
"""

from gateway.store.file.store import FileStore

__all__ = ["FileStore"]
