"""ChestX-ray14 reading, CSV format, patient split, sampler and dataset determinism."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cral_model.config import PreprocessConfig
from cral_model.data import (
    EpochSampler,
    EvalPreset,
    ImageDataset,
    MissingImagesError,
    TrainPreset,
    index_images,
    load_csv_dataset,
    load_nih_split,
    make_synthetic_nih,
    parse_finding_labels,
    patient_split,
)
from cral_model.labels import CLASS_NAMES
from cral_model.preprocessing import preprocess


@pytest.fixture
def synth(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path / "nih"
    split = make_synthetic_nih(root, n_patients=8, images_per_patient=2, test_patients=2, size=16)
    return root, split


# ------------------------------------------------------------------------------------------ labels


def test_parse_finding_labels() -> None:
    v = parse_finding_labels("Cardiomegaly|Effusion")
    assert v.dtype == np.float32
    assert v.shape == (14,)
    assert np.flatnonzero(v).tolist() == [CLASS_NAMES.index("Cardiomegaly"), CLASS_NAMES.index("Effusion")]
    assert not parse_finding_labels("No Finding").any()
    assert not parse_finding_labels("").any()
    assert parse_finding_labels("Pleural_Thickening|Hernia")[[12, 13]].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown finding"):
        parse_finding_labels("Cardiomegaly|Covid")


def test_real_labels_match_data_entry(shared_data: Path) -> None:
    labels_dir = shared_data / "chestxray14-labels"
    images_root = shared_data / "chestxray14-nih1000-64px"
    ds = load_nih_split(images_root, "train_val", labels_dir=labels_dir, allow_missing=True)
    by_name = dict(zip(ds.names, range(len(ds)), strict=True))
    # Known rows of Data_Entry_2017 (patient 1's three images).
    expected = {
        "00000001_000.png": ({"Cardiomegaly"}, "1"),
        "00000001_001.png": ({"Cardiomegaly", "Emphysema"}, "1"),
        "00000001_002.png": ({"Cardiomegaly", "Effusion"}, "1"),
    }
    for name, (findings, pid) in expected.items():
        i = by_name[name]
        assert {CLASS_NAMES[k] for k in np.flatnonzero(ds.labels[i])} == findings
        assert ds.patients[i] == pid
    # Every present image agrees with an independent parse of the gzipped table.
    with gzip.open(labels_dir / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        table = {r["Image Index"]: r for r in csv.DictReader(fh)}
    for i in range(0, len(ds), 37):
        row = table[ds.names[i]]
        want = set() if row["Finding Labels"] == "No Finding" else set(row["Finding Labels"].split("|"))
        assert {CLASS_NAMES[k] for k in np.flatnonzero(ds.labels[i])} == want
        assert ds.patients[i] == str(int(row["Patient ID"]))


def test_real_subset_counts_and_refusal(shared_data: Path) -> None:
    labels_dir = shared_data / "chestxray14-labels"
    images_root = shared_data / "chestxray14-nih1000-64px"
    with pytest.raises(MissingImagesError, match="--allow-missing"):
        load_nih_split(images_root, "train_val", labels_dir=labels_dir)
    ds = load_nih_split(images_root, "train_val", labels_dir=labels_dir, allow_missing=True)
    assert len(ds) == 690
    assert ds.n_missing == 86524 - 690
    assert ds.labels.dtype == np.float32
    pos = ds.positives()
    # Counts from ../shared/data/README.md.
    assert (pos["Effusion"], pos["Infiltration"], pos["Hernia"]) == (96, 84, 1)
    assert int((ds.labels.sum(1) == 0).sum()) == 400
    assert len(set(ds.patients)) == 249
    tr, va = patient_split(ds.patients, 0.2, seed=0)
    assert not {ds.patients[i] for i in tr} & {ds.patients[i] for i in va}
    assert len(tr) + len(va) == 690


# ------------------------------------------------------------------------------------------ NIH layout


def test_nested_images_found_and_labels(synth) -> None:
    root, split = synth
    index = index_images(root)
    assert set(index) == set(split["train_val"]) | set(split["test"])
    assert {Path(p).parent.parent.name for p in index.values()} == {"images_001", "images_002"}
    test = load_nih_split(root, "test")
    assert list(test.names) == split["test"]
    assert test.labels.shape == (len(split["test"]), 14)
    assert test.n_missing == 0


@pytest.mark.parametrize(
    ("table_name", "gz"),
    [("Data_Entry_2017.csv", False), ("Data_Entry_2017.csv", True), ("Data_Entry_2017_v2020.csv", False)],
)
def test_table_names_and_separate_labels_dir(tmp_path: Path, table_name: str, gz: bool) -> None:
    root = tmp_path / "nih"
    make_synthetic_nih(root, n_patients=4, test_patients=1, size=8, table_name=table_name, gzip_table=gz)
    ref = load_nih_split(root, "train_val")
    # Move the label files elsewhere: found through labels_dir, and below a nested folder too.
    labels = tmp_path / "labels" / "deeper"
    labels.mkdir(parents=True)
    for f in root.iterdir():
        if f.is_file():
            shutil.move(str(f), labels / f.name)
    with pytest.raises(FileNotFoundError, match="--labels-dir"):
        load_nih_split(root, "train_val")
    got = load_nih_split(root, "train_val", labels_dir=tmp_path / "labels")
    assert got.names == ref.names
    np.testing.assert_array_equal(got.labels, ref.labels)


def test_missing_images_refused_then_allowed(synth) -> None:
    root, split = synth
    gone = split["train_val"][:3]
    for p in root.rglob("*.png"):
        if p.name in gone:
            p.unlink()
    with pytest.raises(MissingImagesError) as err:
        load_nih_split(root, "train_val")
    assert "3 of 12" in str(err.value)
    ds = load_nih_split(root, "train_val", allow_missing=True)
    assert len(ds) == 9
    assert ds.n_missing == 3
    assert set(ds.missing_examples) == set(gone)


def test_csv_formats(tmp_path: Path, synth) -> None:
    root, _ = synth
    ref = load_nih_split(root, "train_val")
    # Format 1: path + 14 class columns, paths relative to the CSV.
    rel = [Path(p).relative_to(root).as_posix() for p in ref.paths]
    f1 = root / "own.csv"
    with open(f1, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", *CLASS_NAMES, "Patient ID"])
        for r, lab, pid in zip(rel, ref.labels, ref.patients, strict=True):
            w.writerow([r, *lab.astype(int).tolist(), pid])
    a = load_csv_dataset(f1)
    np.testing.assert_array_equal(a.labels, ref.labels)
    assert a.patients == ref.patients
    # Format 2: bare file names + Finding Labels, resolved below data_root by name; no patient column.
    f2 = tmp_path / "own2.csv"
    with open(f2, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "Finding Labels"])
        for name, lab in zip(ref.names, ref.labels, strict=True):
            w.writerow([name, "|".join(CLASS_NAMES[k] for k in np.flatnonzero(lab)) or "No Finding"])
        w.writerow(["nothere.png", "Hernia"])
    with pytest.raises(MissingImagesError):
        load_csv_dataset(f2, data_root=root)
    b = load_csv_dataset(f2, data_root=root, allow_missing=True)
    np.testing.assert_array_equal(b.labels, ref.labels)
    assert len(set(b.patients)) == len(b)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,Cardiomegaly\nx.png,1\n")
    with pytest.raises(ValueError, match="Finding Labels"):
        load_csv_dataset(bad)


# ------------------------------------------------------------------------------------------ split


def test_patient_split_disjoint_seeded_order_free() -> None:
    rng = np.random.default_rng(1)
    patients = [str(p) for p in rng.integers(0, 50, 400)]
    tr, va = patient_split(patients, 0.2, seed=3)
    assert not {patients[i] for i in tr} & {patients[i] for i in va}
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(400))
    n_pat = len(set(patients))
    assert len({patients[i] for i in va}) == round(0.2 * n_pat)
    _, va2 = patient_split(patients, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, patient_split(patients, 0.2, seed=4)[1])
    # The chosen patients do not depend on the order of the images.
    perm = rng.permutation(400)
    _, va_p = patient_split([patients[i] for i in perm], 0.2, seed=3)
    assert {patients[perm[i]] for i in va_p} == {patients[i] for i in va}
    assert len(patient_split(patients, 0.0, seed=0)[1]) == 0


# ------------------------------------------------------------------------------------------ sampler / dataset


def test_epoch_sampler_shards_cover_single_process_batches() -> None:
    n, b, world = 20, 3, 2
    single = EpochSampler(n, seed=5)
    single.set_epoch(2)
    ranks = [EpochSampler(n, seed=5, num_replicas=world, rank=r) for r in range(world)]
    for s in ranks:
        s.set_epoch(2)
    one = [i for i, _ in single]
    per = [[i for i, _ in s] for s in ranks]
    for step in range(n // (b * world)):
        union = sorted(per[0][step * b : (step + 1) * b] + per[1][step * b : (step + 1) * b])
        assert union == sorted(one[step * b * world : (step + 1) * b * world])
    # Same (index, epoch) -> same augmentation seed whatever the rank; new epoch -> new order.
    seeds_single = dict(iter(single))
    for s in ranks:
        for i, seed in s:
            assert seeds_single[i] == seed
    single.set_epoch(3)
    assert [i for i, _ in single] != one
    assert list(EpochSampler(5, shuffle=False, augment_seeds=False)) == [0, 1, 2, 3, 4]


def test_dataset_transforms_deterministic_and_eval_is_preprocess(synth) -> None:
    root, _ = synth
    ds_images = load_nih_split(root, "train_val")
    cfg = PreprocessConfig(input_size=32, resize=40)
    train = ImageDataset(ds_images, TrainPreset(cfg), cache=True)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    x1, y1, i1 = train[(3, 777)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    x2, _, _ = train[(3, 777)]
    x3, _, _ = train[(3, 778)]
    assert x1.shape == (3, 32, 32)
    assert x1.dtype == torch.float32
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, x3)
    assert i1 == 3
    np.testing.assert_array_equal(y1.numpy(), ds_images.labels[3])
    ev = ImageDataset(ds_images, EvalPreset(cfg))
    from PIL import Image

    raw = np.array(Image.open(ds_images.paths[2]))
    assert torch.equal(ev[2][0], preprocess(raw, cfg))
