"""The dataset registry: one entry per dataset, saying where its data comes from,
how labels are read, and what its submission looks like."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from competition.errors import UserError


@dataclass(frozen=True)
class SubmissionFormat:
    """The exact CSV a competition accepts.

    ``target`` is ``"label"`` (hard class: 1 for the positive class, 0 otherwise)
    or ``"probability"`` (probability of the positive class, scored by log loss).
    """

    target: str
    positive_class: str
    id_column: str = "id"
    label_column: str = "label"
    expected_rows: int = 0
    sample_file: str = "sampleSubmission.csv"

    @property
    def metric(self) -> str:
        return "log_loss" if self.target == "probability" else "accuracy"


@dataclass(frozen=True)
class Dataset:
    """How to get a dataset and how to read its labels.

    ``layout`` is ``"prefixed-files"`` (``cat.1.jpg``: label from the prefix, a
    competition with an unlabelled test folder) or ``"class-folders"`` (one folder
    per class; the test split is a stratified hold-out).
    """

    name: str
    title: str
    layout: str
    kaggle_competition: str | None = None
    kaggle_dataset: str | None = None
    download_url: str | None = None
    train_archive: str | None = None
    test_archive: str | None = None
    train_folder: str = "train"
    test_folder: str = "test"
    excluded_classes: tuple[str, ...] = ()
    submission: SubmissionFormat | None = None
    homepage: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_competition(self) -> bool:
        return self.submission is not None

    @property
    def rules_url(self) -> str | None:
        if self.kaggle_competition is None:
            return None
        return f"https://www.kaggle.com/competitions/{self.kaggle_competition}/rules"


REGISTRY: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            name="dogs-vs-cats",
            title="Kaggle Dogs vs. Cats (2013)",
            layout="prefixed-files",
            kaggle_competition="dogs-vs-cats",
            train_archive="train.zip",
            test_archive="test1.zip",
            train_folder="train",
            test_folder="test1",
            submission=SubmissionFormat(target="label", positive_class="dog", expected_rows=12500),
            homepage="https://www.kaggle.com/competitions/dogs-vs-cats",
        ),
        Dataset(
            name="dogs-vs-cats-redux-kernels-edition",
            title="Kaggle Dogs vs. Cats Redux: Kernels Edition",
            layout="prefixed-files",
            kaggle_competition="dogs-vs-cats-redux-kernels-edition",
            train_archive="train.zip",
            test_archive="test.zip",
            train_folder="train",
            test_folder="test",
            submission=SubmissionFormat(
                target="probability", positive_class="dog", expected_rows=12500,
                sample_file="sample_submission.csv",
            ),
            homepage="https://www.kaggle.com/competitions/dogs-vs-cats-redux-kernels-edition",
        ),
        Dataset(
            name="animals",
            title="Animals (cats, dogs, panda; 3,000 images)",
            layout="class-folders",
            kaggle_dataset="ashishsaxena2209/animal-image-datasetdog-cat-and-panda",
            homepage="https://www.kaggle.com/datasets/ashishsaxena2209/animal-image-datasetdog-cat-and-panda",
        ),
        Dataset(
            name="flowers17",
            title="Oxford 17 Category Flower Dataset",
            layout="class-folders",
            download_url="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz",
            homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
            # the official archive is not foldered: jpg/image_0001.jpg.. in blocks of 80 per class
            extra={
                "numbered_classes": (
                    "daffodil", "snowdrop", "lilyvalley", "bluebell", "crocus", "iris", "tigerlily",
                    "tulip", "fritillary", "sunflower", "daisy", "coltsfoot", "dandelion", "cowslip",
                    "buttercup", "windflower", "pansy",
                ),
                "images_per_class": 80,
            },
        ),
        Dataset(
            name="caltech101",
            title="Caltech-101 (101 object classes)",
            layout="class-folders",
            download_url="https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
            excluded_classes=("BACKGROUND_Google",),
            homepage="https://data.caltech.edu/records/mzrjq-6wc02",
        ),
    )
}


def get_dataset(name: str, custom_source: bool = False) -> Dataset:
    """The registered dataset ``name``; with ``custom_source``, any other name is an
    image-folder dataset (one folder per class) read from the given source."""
    if name in REGISTRY:
        return REGISTRY[name]
    if custom_source:
        return Dataset(name=name, title=name, layout="class-folders")
    known = ", ".join(sorted(REGISTRY))
    raise UserError(
        f"unknown dataset '{name}': known datasets are {known}; "
        f"for your own image folders pass SOURCE=<folder or archive>"
    )


def with_overrides(dataset: Dataset, **changes) -> Dataset:
    """A copy of ``dataset`` with some fields changed (for tests and custom sources)."""
    return replace(dataset, **changes)
