"""ChestX-ray14 (as NIH ships it) and plain-CSV datasets, patient-disjoint splits, train/eval presets."""

from cral_model.data.dataset import EpochSampler, ImageDataset, load_image, sample_seed
from cral_model.data.nih import (
    DATA_ENTRY_NAMES,
    LabeledImages,
    MissingImagesError,
    find_label_file,
    index_images,
    load_csv_dataset,
    load_nih_split,
    parse_finding_labels,
    read_data_entry,
    read_name_list,
)
from cral_model.data.splits import patient_split
from cral_model.data.synthetic import make_synthetic_nih
from cral_model.data.transforms import EvalPreset, TrainPreset

__all__ = [
    "DATA_ENTRY_NAMES",
    "EpochSampler",
    "EvalPreset",
    "ImageDataset",
    "LabeledImages",
    "MissingImagesError",
    "TrainPreset",
    "find_label_file",
    "index_images",
    "load_csv_dataset",
    "load_image",
    "load_nih_split",
    "make_synthetic_nih",
    "parse_finding_labels",
    "patient_split",
    "read_data_entry",
    "read_name_list",
    "sample_seed",
]
