"""The S3 store: :class:`ObjectStore` on any S3-compatible server, via boto3.

This package is the only place that imports boto3/botocore. boto3 is blocking, so
every call goes through :meth:`S3Store._call`, which runs it in a worker
thread under one :class:`anyio.CapacityLimiter`: the event loop never blocks,
and at most ``max_concurrency`` requests are in flight (the connection pool is
sized to match, so no request waits for a socket while holding a slot).

Where boto3's errors meet ours they become :class:`StorageError` (after
boto3's own retries), ``NoSuchKey`` becomes ``None`` for ``get``/``head``, and
``NoSuchUpload`` becomes :class:`KeyError`. ETags are returned without the
quotes S3 puts around them.

Endpoint, credentials and region come from boto3's own settings
(``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_REGION`` ...).

The store is one class built up by concern, each module adding to the
last: :mod:`.client` (the boto3 client, errors, the one place calls run),
:mod:`.objects` (whole objects and ranged reads), :mod:`.multipart`,
:mod:`.compose` (joining objects inside the server) and :mod:`.store`
(:class:`S3Store` itself, with its lifecycle).
"""

from gateway.store.s3.client import S3Error, build_client
from gateway.store.s3.store import S3Store

__all__ = ["S3Error", "S3Store", "build_client"]
