"""``make upload``: submit a validated submission CSV to its Kaggle competition.

Only files written by ``make submit`` qualify: each has a JSON record next to it
saying whether it is uploadable (a submission built from a partial test set is
not). The kaggle client is imported lazily (``competition.download.kaggle_api``),
because it authenticates, and prints a long help text, when imported.
"""

from __future__ import annotations

import json
from pathlib import Path

from competition import paths
from competition.datasets import get_dataset
from competition.download import kaggle_api
from competition.errors import UserError
from competition.submission import file_sha256


def configure(parser) -> None:
    parser.add_argument(
        "--file", type=Path, default=None,
        help="the submission CSV to upload (default: the newest in submissions/<dataset>/)",
    )
    parser.add_argument(
        "--message", default=None,
        help="the submission's description (default: the blend method and its out-of-fold scores)",
    )


def newest_submission(dataset: str) -> Path:
    """The most recent CSV written by ``make submit`` for ``dataset`` (names start with a timestamp)."""
    candidates = sorted(paths.submissions_dir(dataset).glob("*.csv"))
    if not candidates:
        raise UserError(f"no submission in {paths.submissions_dir(dataset)}: run `make submit DATASET={dataset}` first")
    return candidates[-1]


def submission_record(csv_path: Path) -> dict:
    """The JSON record ``make submit`` wrote next to ``csv_path``."""
    record_path = Path(csv_path).with_suffix(".json")
    if not Path(csv_path).is_file():
        raise UserError(f"{csv_path} does not exist: pick a CSV in submissions/ or run `make submit`")
    if not record_path.is_file():
        raise UserError(f"{csv_path} has no record {record_path.name}, so it was not validated: write it with `make submit`")
    return json.loads(record_path.read_text())


def default_message(record: dict) -> str:
    """The blend method, its models and its out-of-fold scores, for the submission's description."""
    ensemble = record["oof_scores"]["ensemble"]
    log_loss = record.get("log_loss_after_clip") or ensemble["log_loss"]
    return (
        f"{record['method']} blend of {', '.join(record['models'])}: out-of-fold accuracy "
        f"{ensemble['accuracy']:.4f}, log loss {log_loss:.4f} ({record['oof_rows']} rows)"
    )


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_offline(error, text):
    import requests

    return isinstance(error, requests.exceptions.ConnectionError)


def _is_rules(error, text):
    return _status(error) == 403 or "rules" in text


def _is_daily_limit(error, text):
    return _status(error) == 429 or any(word in text for word in ("daily", "limit", "allowance"))


def _is_closed(error, text):
    return any(word in text for word in ("closed", "ended", "deadline", "not accept", "no longer"))


def _is_unauthorized(error, text):
    return _status(error) == 401 or "unauthori" in text


# (recognise, explain) pairs, tried in order; explain(competition) -> message
KAGGLE_ERRORS = (
    (_is_offline, lambda competition: "no network: cannot reach Kaggle; connect to the internet and retry"),
    (_is_unauthorized, lambda competition: "Kaggle rejected the credentials (401): create a new API token at "
                                            "https://www.kaggle.com/settings and install it"),
    (_is_daily_limit, lambda competition: f"the daily submission limit of {competition.kaggle_competition} is "
                                          f"reached: upload again tomorrow (UTC)"),
    (_is_closed, lambda competition: f"{competition.kaggle_competition} no longer accepts submissions: "
                                     f"see {competition.homepage}"),
    (_is_rules, lambda competition: f"Kaggle refused the submission (403): accept the competition rules at "
                                    f"{competition.rules_url} and retry"),
)


def explain_kaggle_error(error: Exception, competition) -> UserError:
    """A one-line UserError for a failed Kaggle request (rules, limits, closed, credentials)."""
    text = str(error).lower()
    for recognise, explain in KAGGLE_ERRORS:
        if recognise(error, text):
            return UserError(explain(competition))
    return UserError(f"Kaggle refused the submission to {competition.kaggle_competition}: {str(error).strip()}")


def upload(csv_path: Path, competition, message: str) -> str:
    """Submit ``csv_path`` to ``competition`` with the real kaggle client; returns Kaggle's answer."""
    import requests

    api = kaggle_api()
    try:
        response = api.competition_submit(str(csv_path), message, competition.kaggle_competition, quiet=True)
    except requests.exceptions.RequestException as error:
        raise explain_kaggle_error(error, competition) from None
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise UserError(f"uploading {csv_path.name} to Kaggle failed: check the connection and retry")
    return response.message


def main(args) -> int:
    """Upload the newest (or the named) validated submission."""
    competition = get_dataset(args.dataset, custom_source=True)
    csv_path = args.file or newest_submission(competition.name)
    record = submission_record(csv_path)
    if record.get("dataset") != competition.name:
        raise UserError(f"{csv_path} was made for {record.get('dataset')}, not {competition.name}: pass DATASET={record.get('dataset')}")
    if not competition.is_competition or not record.get("competition"):
        raise UserError(f"{args.dataset} is not a Kaggle competition: there is nothing to upload {csv_path.name} to")
    if record.get("sha256") != file_sha256(csv_path):
        raise UserError(f"{csv_path} changed after `make submit` validated it: write it again with `make submit`")
    if not record.get("uploadable"):
        reasons = "; ".join(record.get("not_uploadable_because", [])) or "the record marks it not uploadable"
        raise UserError(f"{csv_path} is not uploadable ({reasons}): build it from the full test set with `make submit`")
    message = args.message or default_message(record)
    answer = upload(Path(csv_path), competition, message)
    print(f"uploaded {csv_path} to {competition.kaggle_competition}: {answer or 'submitted'}")
    print(f"message: {message}")
    return 0
