"""What every S3 server the tests start offers: its environment, a client, buckets."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class S3Endpoint:
    """Mixin for a running S3 server with ``endpoint_url``, keys and ``region``."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def env(self) -> dict[str, str]:
        """The AWS_* variables a gateway subprocess needs to reach this server.

        Shared AWS config files and the instance metadata service are switched
        off, so nothing from the machine leaks in and no request leaves
        loopback.
        """
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, max_concurrency: int = 16) -> S3Client:
        """A boto3 S3 client for this server, configured as the gateway's own."""
        from gateway.store.s3 import build_client

        return build_client(
            max_concurrency,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name if none is given); return its name."""
        name = name or f"t-{uuid.uuid4().hex[:20]}"
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name


def round_trip(client: S3Client) -> str | None:
    """None once a signed bucket create, put and delete work (then closes the client)."""
    try:
        bucket = "ready-probe"
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        client.delete_object(Bucket=bucket, Key="probe")
        return None
    except Exception as exc:  # any failure means "not ready yet"
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
