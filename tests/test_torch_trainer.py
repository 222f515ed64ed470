"""The PyTorch trainer, its teacher and the exporter to the seed's Keras ``.h5``.

Fast tests need only PyTorch; the ones that load TensorFlow (the export checks) are slow. Photos
are generated here, except in the export check on real photos, which runs where
``../shared/data/skin9`` is present (CI has it) and is skipped elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from conftest import REPO, SKIN9  # noqa: E402  (SKIN9 honours SKINSCAN_DATA, as every other test's does)
from skinscan.labels import LABELS  # noqa: E402
from skinscan.training import data as dataset  # noqa: E402
from skinscan.training.architecture import SEED_PARAMETER_COUNT  # noqa: E402
from skinscan.training.torch_networks import keras_parameter_count, load_by_position, student, teacher  # noqa: E402
from skinscan.training.torch_train import (  # noqa: E402
    TorchTrainConfig,
    build,
    evaluate_checkpoint,
    train,
    training_loss,
)

SHIPPED_SPLIT = REPO / "shared" / "skinscan" / "models" / "skinscan-densenet121.split.json"


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> tuple[Path, Path]:
    """Nine generated classes, each lesion photographed by camera and dermoscope, and a split file."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    rows = ["class,file,lesion_id,image_type,source,skin_tone_class"]
    for c, label in enumerate(LABELS):
        (root / label).mkdir()
        for lesion in range(4):
            for kind in ("clinical", "dermoscopic"):
                base = np.array([40 + 22 * c, 200 - 15 * c, 90 + (c % 3) * 50], np.float32)
                yy, xx = np.mgrid[0:40, 0:40]
                pattern = 40 * np.sin((xx * (c + 1) + yy) / 4.0)[..., None]
                pixels = np.clip(base + pattern + rng.normal(0, 10, (40, 40, 3)), 0, 255).astype(np.uint8)
                name = f"{lesion}-{kind}.jpg"
                Image.fromarray(pixels).save(root / label / name, quality=95)
                rows.append(f"{label},{name},L{c}-{lesion},{kind},generated,")
    (root / dataset.METADATA_FILE).write_text("\n".join(rows) + "\n")
    split = root / "split.json"
    dataset.save_split(dataset.stratified_split(dataset.discover(root), seed=1), split, seed=1)
    return root, split


def test_the_student_is_the_seeds_densenet121_with_its_parameter_count():
    assert keras_parameter_count(student()) == SEED_PARAMETER_COUNT == 7_046_729


def test_the_teacher_starts_from_the_wheels_imagenet_weights_with_a_new_nine_way_head():
    fresh = teacher("lite0", imagenet=False)
    loaded = teacher("lite0")
    stem = "conv_stem.weight"
    assert not torch.equal(fresh.state_dict()[stem], loaded.state_dict()[stem])
    assert loaded.get_classifier().out_features == len(LABELS)


def test_weights_that_do_not_fit_the_network_are_refused_not_half_loaded():
    network = teacher("lite0", imagenet=False)
    wrong = {k: torch.zeros(3) for k in list(network.state_dict())[:10]}
    with pytest.raises(ValueError, match="source tensors"):
        load_by_position(network, wrong, skip_head=False)


def test_distillation_adds_nothing_when_the_student_already_answers_like_the_teacher():
    logits = torch.randn(8, len(LABELS))
    labels = torch.randint(0, len(LABELS), (8,))
    config = TorchTrainConfig(data=Path("."), out=Path("."), split_file=Path("."), distill_weight=0.5,
                              label_smoothing=0.0)
    agreeing = training_loss(logits, labels, logits.clone(), config, pairs=0)
    disagreeing = training_loss(logits, labels, -logits, config, pairs=0)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert float(agreeing) == pytest.approx(0.5 * float(plain), rel=1e-5)
    assert float(disagreeing) > float(agreeing)


def test_two_views_of_a_lesion_that_disagree_cost_more_than_two_that_agree():
    labels = torch.zeros(4, dtype=torch.long)
    config = TorchTrainConfig(data=Path("."), out=Path("."), split_file=Path("."), consistency=1.0)
    same = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    swapped = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 4.0], [4.0, 0.0]])
    pad = torch.zeros(4, len(LABELS) - 2)
    agree = training_loss(torch.cat([same, pad], 1), labels, None, config, pairs=2)
    disagree = training_loss(torch.cat([swapped, pad], 1), labels, None, config, pairs=2)
    assert float(disagree) > float(agree)


def test_teacher_then_distilled_student_then_resume_on_generated_photos(photo_folder, tmp_path):
    root, split = photo_folder
    common = dict(data=root, split_file=split, steps_per_epoch=2, batch_size=8, pairs_per_batch=2,
                  val_limit=None, device="cpu")
    teacher_run = tmp_path / "teacher"
    state = train(TorchTrainConfig(out=teacher_run, role="teacher", image_size=48, epochs=1, **common))
    assert state["epoch"] == 1 and (teacher_run / "best.pt").is_file()
    assert set(state["best_val"]) >= {"clinical_top1", "dermoscopic_top1", "score"}

    student_run = tmp_path / "student"
    config = TorchTrainConfig(out=student_run, role="student", image_size=32, teacher_checkpoint=teacher_run / "best.pt",
                              epochs=2, time_budget_minutes=1e-6, **common)
    first = train(config)
    assert first["epoch"] == 1, "the time budget stops the run after its first epoch"
    second = train(config.__class__(**{**config.__dict__, "time_budget_minutes": None}), resume=True)
    assert second["epoch"] == 2 and [h["epoch"] for h in second["history"]] == [1, 2]
    saved = torch.load(student_run / "last.pt", map_location="cpu", weights_only=False)
    assert saved["role"] == "student" and saved["image_size"] == 32 and "optimizer" in saved

    for run, role in ((teacher_run, "teacher"), (student_run, "student")):
        report = evaluate_checkpoint(run / "best.pt", root, split, "test")
        assert report["role"] == role and report["count"] == len(dataset.load_split(split)["test"])
        assert {"clinical", "dermoscopic"} <= set(report["by_group"])
        assert 0.0 <= report["top1_accuracy"] <= report["top4_accuracy"] <= 1.0


def test_a_teacher_continues_from_a_teacher_checkpoint_and_refuses_a_student_one(tmp_path):
    config = TorchTrainConfig(data=tmp_path, out=tmp_path, split_file=tmp_path / "split.json", role="teacher")
    earlier = teacher(imagenet=False)
    torch.nn.init.normal_(earlier.classifier.weight)
    torch.save({"network": earlier.state_dict(), "role": "teacher", "teacher_name": "lite0"}, tmp_path / "t.pt")
    continued = build(TorchTrainConfig(**{**config.__dict__, "init_model": tmp_path / "t.pt"}))
    assert torch.equal(continued.classifier.weight, earlier.classifier.weight)

    torch.save({"network": student().state_dict(), "role": "student", "teacher_name": "lite0"}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="not a lite0 teacher checkpoint"):
        build(TorchTrainConfig(**{**config.__dict__, "init_model": tmp_path / "s.pt"}))


@pytest.mark.slow
def test_the_exported_h5_loads_in_tensorflow_and_answers_like_the_pytorch_network(photo_folder, tmp_path):
    import tensorflow  # noqa: F401  (after torchvision: see torch_networks)

    from skinscan.manifest import manifest_path_for, read_manifest, sha256_file
    from skinscan.training.torch_train import export_run

    root, split = photo_folder
    run = tmp_path / "run"
    train(TorchTrainConfig(data=root, out=run, split_file=split, role="student", image_size=32, epochs=1,
                           steps_per_epoch=2, batch_size=8, val_limit=None, device="cpu"))
    out = tmp_path / "model.h5"
    record = export_run(run / "best.pt", out, root, split)
    assert record["export_check"]["max_abs_difference"] <= 1e-4
    manifest = read_manifest(manifest_path_for(out))
    assert manifest["sha256"] == sha256_file(out) and manifest["preprocessing"]["size"] == 32
    assert json.loads(out.with_name("model.training.json").read_text())["epoch"] == 1

    import keras

    from skinscan.training.torch_export import torch_probabilities
    from skinscan.training.torch_train import load_student

    reloaded = keras.models.load_model(out, compile=False)
    assert reloaded.count_params() == SEED_PARAMETER_COUNT
    inputs = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    difference = np.abs(reloaded.predict(inputs, verbose=0) - torch_probabilities(load_student(run / "best.pt"), inputs))
    assert difference.max() <= 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not SKIN9.is_dir(), reason="needs ../shared/data/skin9 (real photos)")
def test_the_shipped_model_survives_keras_to_torch_to_keras_on_real_photos():
    """The exporter both ways on trained weights (real BatchNorm statistics) and real photos."""
    import keras

    from skinscan.imaging import Preprocessing
    from skinscan.store import SHIPPED_MODEL
    from skinscan.training.torch_export import EXPORT_TOLERANCE, keras_to_torch, torch_to_keras, verify_export

    shipped = keras.models.load_model(SHIPPED_MODEL, compile=False)
    size = shipped.input_shape[1]
    samples = dataset.camera_first_subset(dataset.load_split(SHIPPED_SPLIT, SKIN9)["test"], 48, seed=0)
    pixels, _ = dataset.load_pixels(SKIN9, samples, size)
    inputs = Preprocessing(size).normalize(pixels.astype(np.float32)).astype(np.float32)
    network = keras_to_torch(shipped)
    assert verify_export(network, shipped, inputs).max_abs_difference <= EXPORT_TOLERANCE
    again = torch_to_keras(network, size)
    check = verify_export(network, again, inputs)
    assert check.passed and check.same_top1 == 1.0
    assert np.array_equal(shipped.get_weights()[0], again.get_weights()[0])


@pytest.mark.slow
def test_the_teachers_keras_twin_answers_like_the_imagenet_teacher(photo_folder, tmp_path):
    """Issue 18, item 4's first step: the teacher in Keras, checked like the student's export."""
    import keras

    from skinscan.imaging import Preprocessing
    from skinscan.training.torch_export import EXPORT_TOLERANCE, torch_probabilities
    from skinscan.training.torch_networks import LITE_STATISTICS
    from skinscan.training.torch_train import export_run

    root, split = photo_folder
    network = teacher()  # ImageNet weights: real BatchNorm statistics, not the fresh 0/1 ones
    checkpoint = tmp_path / "teacher.pt"
    torch.save({"network": network.state_dict(), "role": "teacher", "teacher_name": "lite0", "image_size": 64},
               checkpoint)
    record = export_run(checkpoint, tmp_path / "teacher.h5", root, split)
    assert record["role"] == "teacher" and record["export_check"]["max_abs_difference"] <= EXPORT_TOLERANCE

    reloaded = keras.models.load_model(tmp_path / "teacher.h5", compile=False)
    assert reloaded.count_params() == keras_parameter_count(network)
    pixels, _ = dataset.load_pixels(root, dataset.load_split(split, root)["test"], 64)
    lite = Preprocessing(size=64, mean=LITE_STATISTICS[0], std=LITE_STATISTICS[1])
    inputs = lite.normalize(pixels.astype(np.float32)).astype(np.float32)
    theirs = reloaded.predict(inputs, verbose=0)
    ours = torch_probabilities(network.eval(), inputs)
    assert np.abs(theirs - ours).max() <= EXPORT_TOLERANCE and (theirs.argmax(1) == ours.argmax(1)).all()


@pytest.mark.slow
def test_a_network_that_is_not_a_lite_teacher_is_refused_not_exported_differently():
    import timm

    from skinscan.training.torch_export import teacher_to_keras

    with_squeeze_excite = timm.create_model("efficientnet_b0", pretrained=False, num_classes=9)
    with pytest.raises(ValueError, match="not part of a Lite network"):
        teacher_to_keras(with_squeeze_excite, 64)
