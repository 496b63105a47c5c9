"""``make kernel-push``: push a kernel built by ``make kernel`` with the kaggle client."""

from __future__ import annotations

import json

from competition.download import kaggle_api
from competition.errors import UserError
from kernels.build import CODE_FILE, METADATA_FILE, default_slug, kernel_dir


def configure(parser) -> None:
    parser.add_argument("--slug", default=None,
                        help="the built kernel to push, kernels/build/<slug> (default: <dataset>-transfer-learning)")


def push_kernel(slug: str) -> str:
    """Push ``kernels/build/<slug>`` (a new version that runs on Kaggle); returns the kernel's URL."""
    import requests

    folder = kernel_dir(slug)
    if not (folder / METADATA_FILE).is_file() or not (folder / CODE_FILE).is_file():
        raise UserError(f"no built kernel in {folder}: run `make kernel` first (with the same --slug)")
    kernel_id = json.loads((folder / METADATA_FILE).read_text())["id"]
    api = kaggle_api()
    try:
        response = api.kernels_push(str(folder))
    except requests.exceptions.ConnectionError:
        raise UserError("no network: cannot reach Kaggle; connect to the internet and retry") from None
    except ValueError as error:
        raise UserError(f"{folder / METADATA_FILE} is invalid ({error}): rebuild it with `make kernel`") from None
    except requests.exceptions.HTTPError as error:
        raise UserError(f"Kaggle refused the push of {kernel_id}: {str(error).strip()}") from None
    if response.error:
        raise UserError(f"Kaggle refused the push of {kernel_id}: {response.error}")
    return response.url


def main(args) -> int:
    """Push the built kernel and print where it runs."""
    url = push_kernel(args.slug or default_slug(args.dataset))
    print(f"pushed; it runs at {url}" if url else "pushed")
    return 0
