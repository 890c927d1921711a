"""Whether a Docker engine answers, and which test image to use."""

from __future__ import annotations

import functools
import os

#: Built offline by .ci/docker-setup.sh (Debian bookworm minbase with python3).
TEST_IMAGE = os.environ.get("PYGENT_TEST_IMAGE", "pygent-test:bookworm")


@functools.lru_cache(maxsize=1)
def docker_unavailable_reason() -> str | None:
    """None when an engine answers and the test image exists, else why not."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'pygent[docker]')"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:  # any failure means: no engine for the tests
        return f"no engine answers ({exc.__class__.__name__}: {exc})"
    try:
        client.images.get(TEST_IMAGE)
    except Exception:
        return f"test image {TEST_IMAGE} is missing: run .ci/docker-setup.sh"
    finally:
        client.close()
    return None
